package main

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/setid"
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
			&cli.IntFlag{Name: "keep", Value: 3, EnvVars: envs("keep"), Usage: "newest sets kept per set name"},
			&cli.StringFlag{Name: "grace", Value: "72h", EnvVars: envs("grace"), Usage: "keep what left the live set less than this long ago (e.g. 72h, 3d)"},
			&cli.BoolFlag{Name: "dry-run", EnvVars: envs("dry-run"), Usage: "print the sets that would be removed, remove nothing"},
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
				return usagef("--keep must not be negative")
			}
			root, err := openRoot(c)
			if err != nil {
				return err
			}
			p := layout.Policy{Keep: c.Int("keep"), Grace: grace, Now: time.Now()}
			if c.Bool("dry-run") {
				return e.gcDryRun(root, p)
			}
			unlock, err := root.Lock(c.Context)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, unlock()) }()
			rep, err := root.GC(c.Context, p)
			for _, s := range rep.SetsRemoved {
				fmt.Fprintf(e.stdout, "removed set %s\n", s)
			}
			fmt.Fprintf(e.stdout, "removed %d sets, %d objects (%d bytes), %d staging leftovers\n",
				len(rep.SetsRemoved), rep.ObjectsRemoved, rep.BytesFreed, rep.StagingRemoved)
			return err
		},
	}
}

// gcDryRun prints the sets GC would remove under p, following layout.GC's
// documented rule. Objects are not counted: that needs layout (see report).
func (e *env) gcDryRun(root *layout.Root, p layout.Policy) error {
	names, err := root.SetNames()
	if err != nil {
		return err
	}
	announced := map[string]string{}
	if data, _, err := root.Sets(); err == nil {
		if sets, err := setid.ParseSets(bytes.NewReader(data)); err == nil {
			for _, s := range sets {
				announced[s.Set] = s.ID.String()
			}
		}
	}
	n := 0
	for _, name := range names {
		live, err := root.Live(name)
		if err != nil {
			return err
		}
		ids, err := root.SetIDs(name)
		if err != nil {
			return err
		}
		for i, id := range ids {
			keep := id == live || announced[name] == id.String() || i >= len(ids)-p.Keep
			// A set's end of life is its successor's ID.
			if i+1 < len(ids) && ids[i+1].Time().After(p.Now.Add(-p.Grace)) {
				keep = true
			}
			if !keep {
				fmt.Fprintf(e.stdout, "would remove set %s/%s\n", name, id)
				n++
			}
		}
	}
	fmt.Fprintf(e.stdout, "would remove %d sets (dry run: nothing removed)\n", n)
	return nil
}
