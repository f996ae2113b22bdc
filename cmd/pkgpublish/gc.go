package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/layout"
)

func (e *env) gcCmd() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "remove old sets, then objects no set references",
		Description: "Keeps, for every set, the live one, the one SETS announces, the newest --keep, and every " +
			"set that stopped being live less than --grace ago; objects younger than --grace are kept too.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			rootFlag(),
			&cli.IntFlag{Name: "keep", Value: 3, EnvVars: cmdline.EnvVars("keep"), Usage: "newest sets kept per set name"},
			&cli.StringFlag{Name: "grace", Value: "72h", EnvVars: cmdline.EnvVars("grace"), Usage: "keep what left the live set less than this long ago (e.g. 72h, 3d)"},
			&cli.BoolFlag{Name: "dry-run", EnvVars: cmdline.EnvVars("dry-run"), Usage: "print the sets that would be removed, remove nothing"},
		},
		Action: func(c *cli.Context) (err error) {
			if err := noArgs(c); err != nil {
				return err
			}
			grace, err := durationFlag(c, "grace")
			if err != nil {
				return err
			}
			if c.Int("keep") < 0 {
				return cmdline.Usagef("--keep must not be negative")
			}
			root, err := openRoot(c)
			if err != nil {
				return err
			}
			dry := c.Bool("dry-run")
			p := layout.Policy{Keep: c.Int("keep"), Grace: grace, Now: time.Now(), DryRun: dry}
			if !dry { // a dry run needs no lock
				unlock, lerr := root.Lock(c.Context)
				if lerr != nil {
					return lerr
				}
				defer func() { err = errors.Join(err, unlock()) }()
			}
			rep, err := root.GC(c.Context, p)
			verb := "removed"
			if dry {
				verb = "would remove"
			}
			for _, s := range rep.SetsRemoved {
				fmt.Fprintf(e.stdout, "%s set %s\n", verb, s)
			}
			fmt.Fprintf(e.stdout, "%s %d sets, %d objects (%d bytes), %d staging leftovers\n",
				verb, len(rep.SetsRemoved), rep.ObjectsRemoved, rep.BytesFreed, rep.StagingRemoved)
			if dry {
				fmt.Fprintln(e.stdout, "dry run: nothing removed")
			}
			return err
		},
	}
}
