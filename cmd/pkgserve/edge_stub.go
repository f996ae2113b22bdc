package main

import (
	"errors"

	"github.com/urfave/cli/v2"
)

// edgeFlags and runEdge are placeholders until the edge's edge.go replaces
// this file.
func edgeFlags() []cli.Flag { return nil }

func runEdge(c *cli.Context) error { return errors.New("edge mode not built yet") }
