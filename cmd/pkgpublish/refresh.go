package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

func (e *env) refreshCmd() *cli.Command {
	return &cli.Command{
		Name:  "refresh",
		Usage: "re-sign the live set's manifest with a new expiry, same set ID; prints it",
		Description: "For quiet weeks without builds: a manifest expires (default 30 days after its " +
			"publish) and mirrors then flag the set degraded. refresh keeps the set and its ID and " +
			"moves the expiry to now + --valid (never earlier than it is). With --master, --id names the live " +
			"set ID to refresh, as the last publish printed it (or a mirror's `pkgpublish list --url`): a master " +
			"must not get an older set re-signed as current. SETS and the manifest read from it must verify with " +
			"--key's public key or a --trusted-key.",
		ArgsUsage: " ",
		Flags: append(targetFlags(), setNameFlag("set name (required)"), keyFlag(), validFlag(),
			&cli.StringFlag{Name: "id", EnvVars: cmdline.EnvVars("id"), Usage: "with --master: the live set ID to refresh (required)"}),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			var id setid.ID
			switch {
			case c.String("master") == "" && c.String("id") != "":
				return cmdline.Usagef("--id goes with --master (a local root is read as it is)")
			case c.String("master") != "" && c.String("id") == "":
				return cmdline.Usagef("--master needs --id, the live set ID to refresh (what the last publish printed)")
			case c.String("id") != "":
				var err error
				if id, err = setid.Parse(c.String("id")); err != nil {
					return cmdline.Usagef("--id %q: %v", c.String("id"), err)
				}
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
				res, err = publish.RefreshRemote(c.Context, cfg, t.master, id)
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
