package main

import (
	"testing"

	"github.com/urfave/cli/v2"
)

func TestMemoryCacheFlag(t *testing.T) {
	for _, tt := range []struct {
		arg  string
		want int64
		ok   bool
	}{
		{"", 0, true}, // the mode's default
		{"0", -1, true},
		{"16MiB", 16 << 20, true},
		{"1GiB", 1 << 30, true},
		{"2GiB", 0, false},
		{"-1", 0, false},
		{"lots", 0, false},
	} {
		var got int64
		var err error
		app := &cli.App{Flags: commonFlags(), Action: func(c *cli.Context) error {
			got, err = memoryCache(c)
			return nil
		}}
		args := []string{"pkgserve"}
		if tt.arg != "" {
			args = append(args, "--memory-cache", tt.arg)
		}
		if rerr := app.Run(args); rerr != nil {
			t.Fatalf("%q: %v", tt.arg, rerr)
		}
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("--memory-cache %q = %d, %v; want %d, ok %v", tt.arg, got, err, tt.want, tt.ok)
		}
	}
}
