package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

func (e *env) rollbackCmd() *cli.Command {
	return &cli.Command{
		Name:  "rollback",
		Usage: "publish the content of a retained set as a NEW set ID; prints it",
		Description: "Set IDs only ever increase (mirrors refuse older ones), so reverting is a new set " +
			"whose files are those of --to; paths whose content changes get the new ID as Last-Modified. " +
			"With --master, the old manifest is read from the master and must verify with --key's public " +
			"key, and nothing is uploaded: its objects must still be there (not yet collected by gc).",
		ArgsUsage: " ",
		Flags: append(targetFlags(),
			setNameFlag("set name (required)"),
			&cli.StringFlag{Name: "to", EnvVars: cmdline.EnvVars("to"), Usage: "ID of the retained set whose content to publish (required)"},
			keyFlag(),
			validFlag(),
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			to, err := setid.Parse(c.String("to"))
			if err != nil {
				return cmdline.Usagef("--to %q: %v", c.String("to"), err)
			}
			cfg, err := e.publishConfig(c)
			if err != nil {
				return err
			}
			t, err := e.target(c)
			if err != nil {
				return err
			}
			var res publish.Result
			if t.root != nil {
				res, err = publish.Rollback(c.Context, cfg, t.root, to)
			} else {
				res, err = publish.RollbackRemote(c.Context, cfg, t.master, to)
			}
			if err != nil {
				return err
			}
			e.logResult(res)
			_, err = fmt.Fprintln(e.stdout, res.ID)
			return err
		},
	}
}
