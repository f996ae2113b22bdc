package main

import (
	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/demo"
)

// demoFlags are the flags of the guided tour (`make demo`).
func demoFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "demo",
			Usage: "run the guided tour: publish a generated sample set to a master on loopback, put an edge in front, fetch through it, publish a new set; then keep both running until Ctrl-C"},
		&cli.StringFlag{Name: "demo-dir",
			Usage: "working directory of the tour (default: a temporary directory, removed at the end)"},
		&cli.BoolFlag{Name: "demo-exit",
			Usage: "end the tour after its last step instead of keeping the servers running"},
	}
}

// runDemo runs the guided tour with the pkgserve and pkgpublish binaries
// next to this one.
func runDemo(c *cli.Context) error {
	return demo.Run(c.Context, demo.Config{Dir: c.String("demo-dir"), Stay: !c.Bool("demo-exit")})
}
