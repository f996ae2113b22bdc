package main

import (
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

func (e *env) listCmd() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the sets of a root or a master: IDs, files, sizes, expiry, which one is live",
		Description: "With --root, every set ID on disk. With --url (a master or a mirror, no token needed), " +
			"each set's live ID and the retained ones before it whose manifests the server still holds: " +
			"the IDs `rollback --to` can use.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			rootFlag(),
			&cli.StringFlag{Name: "url", EnvVars: cmdline.EnvVars("url"), Usage: "base URL of a master or mirror to list over HTTP"},
			setNameFlag("list only this set"),
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if (c.String("root") == "") == (c.String("url") == "") {
				return cmdline.Usagef("give exactly one of --root and --url")
			}
			w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SET\tID\tLIVE\tFILES\tBYTES\tEXPIRES")
			now := time.Now()
			if c.String("set") != "" {
				if _, err := setFlag(c); err != nil {
					return err
				}
			}
			if c.String("url") != "" {
				infos, err := publish.ListRemote(c.Context, nil, c.String("url"), c.String("set"))
				if err != nil {
					return err
				}
				for _, in := range infos {
					fmt.Fprintln(w, setLine(in, now))
				}
				return w.Flush()
			}
			root, err := openRoot(c)
			if err != nil {
				return err
			}
			names, err := root.SetNames()
			if err != nil {
				return err
			}
			if want := c.String("set"); want != "" {
				if !slices.Contains(names, want) {
					return fmt.Errorf("list: set %s: %w", want, layout.ErrNotFound)
				}
				names = []string{want}
			}
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
	in := publish.SetInfo{Set: name, ID: id, Live: id == live}
	data, _, err := root.Manifest(name, id)
	var m *manifest.Manifest
	if err == nil {
		m, err = manifest.Decode(data)
	}
	if err != nil {
		in.Err = err
	} else {
		in.Files, in.Bytes, in.Expires = len(m.Entries), m.TotalSize(), m.Expires
	}
	return setLine(in, now)
}

// setLine formats one line of list: SET ID LIVE FILES BYTES EXPIRES.
func setLine(in publish.SetInfo, now time.Time) string {
	mark := ""
	if in.Live {
		mark = "*"
	}
	if in.Err != nil {
		return fmt.Sprintf("%s\t%s\t%s\t?\t?\t%v", in.Set, in.ID, mark, in.Err)
	}
	exp := in.Expires.Format(time.RFC3339)
	if in.Expired(now) {
		exp += " (expired)"
	}
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%s", in.Set, in.ID, mark, in.Files, in.Bytes, exp)
}
