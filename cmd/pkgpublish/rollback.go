package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

func (e *env) rollbackCmd() *cli.Command {
	return &cli.Command{
		Name:  "rollback",
		Usage: "publish the content of a retained set as a NEW set ID; prints it",
		Description: "Set IDs only ever increase (mirrors refuse older ones), so reverting is a new set " +
			"whose files are those of --to; paths whose content changes get the new ID as Last-Modified.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			rootFlag(),
			setNameFlag("set name (required)"),
			&cli.StringFlag{Name: "to", EnvVars: envs("to"), Usage: "ID of the retained set whose content to publish (required)"},
			keyFlag(),
			validFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			to, err := setid.Parse(c.String("to"))
			if err != nil {
				return usagef("--to %q: %v", c.String("to"), err)
			}
			cfg, err := e.publishConfig(c)
			if err != nil {
				return err
			}
			root, err := openRoot(c)
			if err != nil {
				return err
			}
			res, err := publish.Rollback(c.Context, cfg, root, to)
			if err != nil {
				return err
			}
			e.logResult(res)
			_, err = fmt.Fprintln(e.stdout, res.ID)
			return err
		},
	}
}
