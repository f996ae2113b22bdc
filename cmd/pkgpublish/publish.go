package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// validFlag is the --valid flag of publish, rollback and refresh.
func validFlag() cli.Flag {
	return &cli.StringFlag{Name: "valid", Value: fmt.Sprintf("%dd", manifest.DefaultValidity/(24*time.Hour)), EnvVars: cmdline.EnvVars("valid"),
		Usage: "how long the new manifest stays valid (e.g. 30d, 720h)"}
}

func keyFlag() cli.Flag {
	return &cli.StringFlag{Name: "key", EnvVars: cmdline.EnvVars("key"), Usage: "private key file made by keygen (required)"}
}

func setNameFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "set", EnvVars: cmdline.EnvVars("set"), Usage: usage}
}

func rootFlag() cli.Flag {
	return &cli.StringFlag{Name: "root", EnvVars: cmdline.EnvVars("root"), Usage: "repository root directory"}
}

func (e *env) publishCmd() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "publish SRCDIR as the new content of a set; prints the set ID",
		ArgsUsage: "SRCDIR",
		Description: "Hashes SRCDIR (in parallel, skipping files whose size, mtime, inode and ctime are " +
			"cached from the last run), sends only the objects the target lacks, signs the manifest and SETS, " +
			"and switches the set. If nothing changed, no set is made and the live set ID is printed. " +
			"Exactly one of --root (local) and --master (remote) names the target.",
		Flags: append(targetFlags(),
			setNameFlag("set name, e.g. FreeBSD:14:amd64/latest (required)"),
			keyFlag(),
			validFlag(),
			&cli.IntFlag{Name: "jobs", EnvVars: cmdline.EnvVars("jobs"), Usage: "objects sent at once (0: 4 uploads with --master, 16 copies with --root)"},
			&cli.IntFlag{Name: "hash-workers", EnvVars: cmdline.EnvVars("hash-workers"), Usage: "files hashed at once; with --root they also copy new files (0: one per CPU, 4 per CPU with --root)"},
			&cli.StringFlag{Name: "hash-cache", EnvVars: cmdline.EnvVars("hash-cache"),
				Usage: "hash cache file (default: $XDG_CACHE_HOME/pkgcdn/ or ~/.cache/pkgcdn/, named after SRCDIR)"},
			&cli.BoolFlag{Name: "no-hash-cache", EnvVars: cmdline.EnvVars("no-hash-cache"), Usage: "read and hash every file, keep no cache"},
		),
		Action: e.publish,
	}
}

// targetFlags are the flags that name the repository a command changes: a
// local root, or a master and its upload token.
func targetFlags() []cli.Flag {
	return []cli.Flag{
		rootFlag(),
		&cli.StringFlag{Name: "master", EnvVars: cmdline.EnvVars("master"), Usage: "base URL of a pkgcdn master (instead of --root)"},
		&cli.StringFlag{Name: "token-file", EnvVars: cmdline.EnvVars("token-file"), Usage: "file holding the master's upload token (with --master)"},
		&cli.IntFlag{Name: "retries", Value: 5, EnvVars: cmdline.EnvVars("retries"), Usage: "retries of a request failing with a connection error or 5xx (with --master)"},
		&cli.StringFlag{Name: "seen-file", EnvVars: cmdline.EnvVars("seen-file"),
			Usage: "with --master: the file remembering the newest set IDs seen on each master; an older SETS offered is refused (default: $XDG_CACHE_HOME/pkgcdn/seen-ids.json or ~/.cache/pkgcdn/seen-ids.json)"},
		&cli.BoolFlag{Name: "no-seen-file", EnvVars: cmdline.EnvVars("no-seen-file"), Usage: "with --master: remember nothing, check nothing of the kind"},
		&cli.StringSliceFlag{Name: "trusted-key", EnvVars: cmdline.EnvVars("trusted-key"),
			Usage: "a public key file (repeatable) besides --key's whose signatures on the target's SETS and manifests are accepted: other publishers of that master, this publisher's key before a rotation"},
	}
}

// target is the repository of targetFlags: exactly one of root and master.
type target struct {
	root   *layout.Root
	master *publish.Client
}

// target opens the repository that --root or --master names.
func (e *env) target(c *cli.Context) (target, error) {
	root, master := c.String("root"), c.String("master")
	switch {
	case (root == "") == (master == ""):
		return target{}, cmdline.Usagef("give exactly one of --root and --master")
	case root != "":
		r, err := openRoot(c)
		return target{root: r}, err
	case c.String("token-file") == "":
		return target{}, cmdline.Usagef("--master needs --token-file")
	}
	tok, err := os.ReadFile(c.String("token-file"))
	if err != nil {
		return target{}, fmt.Errorf("token: %w", err)
	}
	retries := c.Int("retries")
	if retries == 0 {
		retries = -1 // ClientConfig: negative is none, zero the default
	}
	client, err := publish.NewClient(publish.ClientConfig{URL: master, Token: strings.TrimSpace(string(tok)),
		Retries: retries, Logger: e.log})
	return target{master: client}, err
}

func (e *env) publish(c *cli.Context) error {
	if c.NArg() != 1 {
		return cmdline.Usagef("want exactly one SRCDIR, got %d arguments", c.NArg())
	}
	src := c.Args().First()
	cfg, err := e.publishConfig(c)
	if err != nil {
		return err
	}
	switch {
	case c.String("hash-cache") != "" && c.Bool("no-hash-cache"):
		return cmdline.Usagef("--hash-cache and --no-hash-cache exclude each other")
	case c.String("hash-cache") != "":
		cfg.HashCache = c.String("hash-cache")
	case !c.Bool("no-hash-cache"):
		if cfg.HashCache, err = publish.DefaultHashCachePath(src); err != nil {
			// No $HOME (some cron setups): publish anyway, reading every file.
			e.log.Warn("no hash cache: every file is read", "err", err)
		}
	}
	if c.Int("jobs") < 0 || c.Int("hash-workers") < 0 {
		return cmdline.Usagef("--jobs and --hash-workers must not be negative")
	}
	cfg.Jobs, cfg.HashWorkers = c.Int("jobs"), c.Int("hash-workers")

	t, err := e.target(c)
	if err != nil {
		return err
	}
	var res publish.Result
	if t.root != nil {
		res, err = publish.PublishLocal(c.Context, cfg, t.root, src)
	} else {
		res, err = publish.PublishRemote(c.Context, cfg, t.master, src)
	}
	if err != nil {
		return err
	}
	e.logResult(res)
	_, err = fmt.Fprintln(e.stdout, res.ID)
	return err
}

// publishConfig builds the Config common to publish, rollback and refresh.
func (e *env) publishConfig(c *cli.Context) (publish.Config, error) {
	set, err := setFlag(c)
	if err != nil {
		return publish.Config{}, err
	}
	valid, err := durationFlag(c, "valid")
	if err != nil {
		return publish.Config{}, err
	}
	s, err := signer(c)
	if err != nil {
		return publish.Config{}, err
	}
	cfg := publish.Config{Set: set, Signer: s, TrustedKeys: c.StringSlice("trusted-key"), Valid: valid, Logger: e.log, Progress: e.progress()}
	switch {
	case c.String("master") == "":
	case c.String("seen-file") != "" && c.Bool("no-seen-file"):
		return publish.Config{}, cmdline.Usagef("--seen-file and --no-seen-file exclude each other")
	case c.String("seen-file") != "":
		cfg.SeenFile = c.String("seen-file")
	case !c.Bool("no-seen-file"):
		if cfg.SeenFile, err = publish.DefaultSeenPath(); err != nil {
			// No $HOME (some cron setups): go on, remembering nothing.
			e.log.Warn("no seen-IDs file: an older SETS replayed by the master would not be noticed", "err", err)
		}
	}
	return cfg, nil
}

func (e *env) logResult(res publish.Result) {
	if !res.New {
		e.log.Info("no change: live set kept", "set", res.Set, "set_id", res.ID)
		return
	}
	e.log.Info("set published", "set", res.Set, "set_id", res.ID, "previous", res.Previous.String(),
		"files", res.Files, "bytes", res.Bytes, "hashed_bytes", res.Hash.Bytes, "sent", res.Sent, "sent_bytes", res.SentSize)
}
