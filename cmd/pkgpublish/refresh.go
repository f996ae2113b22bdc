package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/publish"
)

func (e *env) refreshCmd() *cli.Command {
	return &cli.Command{
		Name:  "refresh",
		Usage: "re-sign the live set's manifest with a new expiry, same set ID; prints it",
		Description: "For quiet weeks without builds: a manifest expires (default 30 days after its " +
			"publish) and mirrors then flag the set degraded. refresh keeps the set and its ID and " +
			"moves the expiry to now + --valid (never earlier than it is). With --master, the live manifest is " +
			"read from the master and must verify with --key's public key.",
		ArgsUsage: " ",
		Flags:     append(targetFlags(), setNameFlag("set name (required)"), keyFlag(), validFlag()),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
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
				res, err = publish.Refresh(c.Context, cfg, t.root)
			} else {
				res, err = publish.RefreshRemote(c.Context, cfg, t.master)
			}
			if err != nil {
				return err
			}
			e.log.Info("manifest refreshed", "set", res.Set, "set_id", res.ID)
			_, err = fmt.Fprintln(e.stdout, res.ID)
			return err
		},
	}
}
