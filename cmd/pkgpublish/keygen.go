package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

func (e *env) keygenCmd() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "make a signing key pair: PREFIX.key (mode 0600, unencrypted, for cron) and PREFIX.pub",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", EnvVars: cmdline.EnvVars("out"), Usage: "path prefix of the key files (required)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			prefix := c.String("out")
			if prefix == "" {
				return cmdline.Usagef("--out is required")
			}
			pub, err := sign.GenerateKey(prefix)
			if err != nil {
				return fmt.Errorf("keygen: %w", err)
			}
			e.log.Info("key pair written", "path", prefix+".key", "pub", prefix+".pub")
			_, err = fmt.Fprintln(e.stdout, pub)
			return err
		},
	}
}
