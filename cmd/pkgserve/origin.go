package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/origin"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
)

// originFlags are the master's own flags.
func originFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "root", EnvVars: cmdline.EnvVars("root"),
			Usage: "repository root directory to serve (master; required)"},
		&cli.StringFlag{Name: "publish-token-file", EnvVars: cmdline.EnvVars("publish-token-file"),
			Usage: "file holding the bearer token of the publish API; enables /.pkgcdn/publish/ (needs --trusted-key; default: disabled)"},
		&cli.StringSliceFlag{Name: "notify", EnvVars: cmdline.EnvVars("notify"),
			Usage: "mirror URL POSTed {\"set\",\"id\"} after each commit, e.g. http://mirror/.pkgcdn/notify (repeatable)"},
		&cli.BoolFlag{Name: "grace-sets", Value: true, EnvVars: cmdline.EnvVars("grace-sets"),
			Usage: "serve a path absent from the live set from the newest retained older set that has it (--grace-sets=false disables)"},
		&cli.IntFlag{Name: "grace-depth", Value: origin.DefaultGraceSets, EnvVars: cmdline.EnvVars("grace-depth"),
			Usage: "how many retained older sets grace looks into"},
		&cli.Int64Flag{Name: "max-object-size", Value: origin.DefaultMaxObjectSize, EnvVars: cmdline.EnvVars("max-object-size"),
			Usage: "largest object accepted by the publish API, in bytes"},
		&cli.DurationFlag{Name: "notify-timeout", Value: origin.DefaultNotifyTimeout, EnvVars: cmdline.EnvVars("notify-timeout"),
			Usage: "timeout of one notify attempt (3 attempts, backoff 1s, 2s)"},
		&cli.StringSliceFlag{Name: "mirror", EnvVars: cmdline.EnvVars("mirror"),
			Usage: "mirror URL served at / as \"URL: <mirror>\" for pkg's mirror_type: http (repeatable; default: / is 404)"},
		&cli.StringFlag{Name: "mirror-list", EnvVars: cmdline.EnvVars("mirror-list"),
			Usage: "file of mirror URLs, one a line (# comments), appended to --mirror"},
		&cli.DurationFlag{Name: "mirror-probe", EnvVars: cmdline.EnvVars("mirror-probe"),
			Usage: "probe each mirror's /.pkgcdn/sets this often and list at / only those that answered (all if none did; default 0: list every mirror)"},
	}
}

// recoverRoot takes the root's lock for a moment, which re-checks objects a
// writer that died (power loss mid-upload) left un-synced, so that they are
// not served at /.pkgcdn/objects/ before the next Commit would re-check them.
// A publisher holding the lock recovers in its own Commit: not waited for.
func recoverRoot(ctx context.Context, root *layout.Root) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	unlock, err := root.Lock(ctx)
	if errors.Is(err, layout.ErrLocked) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recover root: %w", err)
	}
	return unlock()
}

// runOrigin runs the master: origin.Server behind runService.
func runOrigin(c *cli.Context) error {
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	dir := c.String("root")
	if dir == "" {
		return cmdline.Usagef("--root is required (or --edge for a mirror)")
	}
	root, err := layout.Open(dir)
	if err != nil {
		return fmt.Errorf("open root: %w", err)
	}
	if err := recoverRoot(c.Context, root); err != nil {
		return err
	}
	var verifier *sign.Verifier
	if keys := c.StringSlice("trusted-key"); len(keys) > 0 {
		if verifier, err = sign.NewVerifier(keys...); err != nil {
			return cmdline.UsageError{Err: err}
		}
	}
	var token string
	if p := c.String("publish-token-file"); p != "" {
		if token, err = readToken(p); err != nil {
			return cmdline.UsageError{Err: err}
		}
		if verifier == nil {
			return cmdline.Usagef("--publish-token-file needs at least one --trusted-key")
		}
	}
	mirrors := c.StringSlice("mirror")
	if p := c.String("mirror-list"); p != "" {
		more, err := readMirrorList(p)
		if err != nil {
			return cmdline.UsageError{Err: err}
		}
		mirrors = append(mirrors, more...)
	}
	if c.Int("grace-depth") < 0 || c.Int("max-waiters") < 0 || c.Int64("max-object-size") < 0 {
		return cmdline.Usagef("--grace-depth, --max-waiters and --max-object-size must not be negative")
	}

	reg := newRegistry()
	health := new(httpserve.Health)
	mem, err := memoryCache(c)
	if err != nil {
		return err
	}
	srv, err := origin.New(origin.Config{
		Root:             root,
		Verifier:         verifier,
		PublishToken:     token,
		NoGrace:          !c.Bool("grace-sets"),
		GraceSets:        c.Int("grace-depth"),
		LongPollTimeout:  c.Duration("long-poll-timeout"),
		MaxWaiters:       c.Int("max-waiters"),
		MaxObjectSize:    c.Int64("max-object-size"),
		Notify:           c.StringSlice("notify"),
		NotifyTimeout:    c.Duration("notify-timeout"),
		Mirrors:          mirrors,
		MirrorProbe:      c.Duration("mirror-probe"),
		MemoryCacheBytes: mem,
		Registerer:       reg,
		Health:           health,
		Logger:           log,
	})
	if err != nil {
		return err
	}
	log.Info("master starting", "root", dir, "publish", token != "", "notify", len(c.StringSlice("notify")),
		"grace", c.Bool("grace-sets"), "mirrors", len(mirrors))
	err = runService(c, srv, health, reg, log)
	log.Info("master stopped")
	return err
}

// readToken reads the publish token file: its content, trimmed.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("publish token: %w", err)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("publish token file %s is empty", path)
	}
	if len(tok) < 16 {
		return "", fmt.Errorf("publish token in %s is shorter than 16 characters", path)
	}
	return tok, nil
}

// readMirrorList reads one mirror URL a line; blank lines and # comments
// are skipped, and a line may already read "URL: <mirror>".
func readMirrorList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mirror list: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimSpace(strings.TrimPrefix(line, "URL:"))
		if strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("mirror list %s: %q is not one URL", path, line)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mirror list %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, errors.New("mirror list " + path + " names no mirror")
	}
	return out, nil
}
