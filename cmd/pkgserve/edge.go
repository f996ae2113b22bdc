package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/edge"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

// edgeFlags are the mirror's own flags.
func edgeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "upstream", EnvVars: cmdline.EnvVars("upstream"),
			Usage: "base URL of the upstream master, edge or plain HTTP mirror (edge; required; repeatable: tried in order, failing over)"},
		&cli.StringFlag{Name: "cache-dir", EnvVars: cmdline.EnvVars("cache-dir"),
			Usage: "directory of the edge's disk cache and its verified SETS and manifests (edge; required)"},
		&cli.StringFlag{Name: "cache-size", Value: "10GiB", EnvVars: cmdline.EnvVars("cache-size"),
			Usage: "bound of the disk cache, bytes with a binary unit: 500MiB, 50GiB, 10G"},
		&cli.DurationFlag{Name: "poll", Value: edge.DefaultPoll, EnvVars: cmdline.EnvVars("poll"),
			Usage: "interval of re-reading the upstream's SETS (or --set-id-url) besides long-polls and notices"},
		&cli.StringFlag{Name: "set-id-url", EnvVars: cmdline.EnvVars("set-id-url"),
			Usage: "plain mode: URL (or a path on the upstream, \"/SETID\") whose change means a new set; cached files are fresh until it changes (default: RFC 9111 freshness)"},
		&cli.DurationFlag{Name: "notify-rate", Value: edge.DefaultNotifyInterval, EnvVars: cmdline.EnvVars("notify-rate"),
			Usage: "least interval between two re-reads of the upstream caused by notices or long-polls"},
		&cli.StringFlag{Name: "upstream-ca", EnvVars: cmdline.EnvVars("upstream-ca"),
			Usage: "PEM CA bundle that verifies https upstreams instead of the system roots"},
		&cli.DurationFlag{Name: "first-byte-timeout", Value: edge.DefaultFirstByteTimeout, EnvVars: cmdline.EnvVars("first-byte-timeout"),
			Usage: "how long an upstream may take to answer before the next one is tried (below pkg's 30s)"},
		&cli.DurationFlag{Name: "upstream-stall-timeout", Value: edge.DefaultStallTimeout, EnvVars: cmdline.EnvVars("upstream-stall-timeout"),
			Usage: "an upstream transfer that sends nothing for this long fails (its clients' connections break; the next request refetches)"},
		&cli.BoolFlag{Name: "no-long-poll", EnvVars: cmdline.EnvVars("no-long-poll"),
			Usage: "do not hold a long-poll on the upstream's /.pkgcdn/sets (rely on --poll and notices)"},
		&cli.DurationFlag{Name: "negative-ttl", Value: edge.DefaultNegativeTTL, EnvVars: cmdline.EnvVars("negative-ttl"),
			Usage: "plain mode: how long an upstream 404 is remembered (with --set-id-url: until the set changes, at most 30×); negative disables"},
		&cli.IntFlag{Name: "prefetch", Value: edge.DefaultPrefetch, EnvVars: cmdline.EnvVars("prefetch"),
			Usage: "catalogue files fetched at once after a set switch; -1 disables prefetch"},
	}
}

// runEdge runs the mirror: edge.Edge over a cache.Cache behind runService.
func runEdge(c *cli.Context) (err error) {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	ups := c.StringSlice("upstream")
	if len(ups) == 0 {
		return cmdline.Usagef("--edge needs at least one --upstream URL")
	}
	for _, u := range ups {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return cmdline.Usagef("--upstream %q: want an http:// or https:// URL", u)
		}
	}
	dir := c.String("cache-dir")
	if dir == "" {
		return cmdline.Usagef("--edge needs --cache-dir")
	}
	size, err := edge.ParseSize(c.String("cache-size"))
	if err != nil || size <= 0 {
		return cmdline.Usagef("--cache-size %q: want a size like 500MiB or 50GiB", c.String("cache-size"))
	}
	mem, err := memoryCache(c)
	if err != nil {
		return err
	}
	if c.Duration("poll") <= 0 || c.Duration("notify-rate") < 0 || c.Duration("first-byte-timeout") < 0 || c.Duration("upstream-stall-timeout") < 0 {
		return cmdline.Usagef("--poll must be positive; --notify-rate, --first-byte-timeout and --upstream-stall-timeout not negative")
	}
	var verifier *sign.Verifier
	if keys := c.StringSlice("trusted-key"); len(keys) > 0 {
		if verifier, err = sign.NewVerifier(keys...); err != nil {
			return cmdline.UsageError{Err: err}
		}
		if c.String("set-id-url") != "" {
			return cmdline.Usagef("--set-id-url is for plain mode; with --trusted-key the edge follows the upstream's signed SETS")
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}

	reg := newRegistry()
	health := new(httpserve.Health)
	start := time.Now()
	ch, err := cache.New(cache.Config{Dir: filepath.Join(dir, "data"), MaxBytes: size, Logger: log,
		StallTimeout: c.Duration("upstream-stall-timeout")})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, ch.Close()) }()
	e, err := edge.New(edge.Config{
		Upstreams:        ups,
		Verifier:         verifier,
		Cache:            ch,
		StateDir:         filepath.Join(dir, "state"),
		MemoryCacheBytes: mem,
		UpstreamCAFile:   c.String("upstream-ca"),
		FirstByteTimeout: c.Duration("first-byte-timeout"),
		StallTimeout:     c.Duration("upstream-stall-timeout"),
		Poll:             c.Duration("poll"),
		NoLongPoll:       c.Bool("no-long-poll"),
		LongPollTimeout:  c.Duration("long-poll-timeout"),
		MaxWaiters:       c.Int("max-waiters"),
		SetIDURL:         c.String("set-id-url"),
		NotifyInterval:   c.Duration("notify-rate"),
		NegativeTTL:      c.Duration("negative-ttl"),
		Prefetch:         c.Int("prefetch"),
		Health:           health,
		Registerer:       reg,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	mode := "plain"
	if verifier != nil {
		mode = "manifest"
	}
	log.Info("edge starting", "mode", mode, "upstream", ups[0], "upstreams", len(ups), "cache", dir,
		"bytes", size, "dur", time.Since(start))
	err = runService(c, e, health, reg, log)
	log.Info("edge stopped")
	return err
}
