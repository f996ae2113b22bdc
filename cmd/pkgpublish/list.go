package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

func (e *env) listCmd() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "list the sets of a root: IDs, files, sizes, expiry, which one is live",
		ArgsUsage: " ",
		Flags:     []cli.Flag{rootFlag()},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			root, err := openRoot(c)
			if err != nil {
				return err
			}
			names, err := root.SetNames()
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SET\tID\tLIVE\tFILES\tBYTES\tEXPIRES")
			now := time.Now()
			for _, name := range names {
				live, err := root.Live(name)
				if err != nil {
					return err
				}
				ids, err := root.SetIDs(name)
				if err != nil && !errors.Is(err, layout.ErrNotFound) {
					return err
				}
				for _, id := range ids {
					fmt.Fprintln(w, listLine(root, name, id, live, now))
				}
			}
			return w.Flush()
		},
	}
}

func listLine(root *layout.Root, name string, id, live setid.ID, now time.Time) string {
	mark := ""
	if id == live {
		mark = "*"
	}
	data, _, err := root.Manifest(name, id)
	if err != nil {
		return fmt.Sprintf("%s\t%s\t%s\t?\t?\t%v", name, id, mark, err)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		return fmt.Sprintf("%s\t%s\t%s\t?\t?\t%v", name, id, mark, err)
	}
	exp := m.Expires.Format(time.RFC3339)
	if m.Expired(now) {
		exp += " (expired)"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%s", name, id, mark, len(m.Entries), m.TotalSize(), exp)
}
