// Command pkgserve serves a pkgcdn repository: on the master (default,
// "origin" mode) it serves the live sets of a repository root and accepts
// publishes over HTTP; with --edge it is a mirror, a pull-through cache of
// an upstream master or edge.
//
// This file holds what both modes share: the flags of the HTTP listeners
// and of logging, the dispatch to runOrigin (origin.go) or runEdge
// (edge.go), signals, and the mapping of errors to exit codes. A mode
// serves its handler with serveMain, which runs the public listener and the
// admin listener (/healthz, /metrics) until SIGTERM or SIGINT, reopens the
// access log and reloads the TLS certificate on SIGHUP, and drains
// in-flight requests before it returns.
//
// Defaults are safe rather than convenient: --listen is 127.0.0.1:8080 and
// --admin-listen 127.0.0.1:9090, so a fresh pkgserve is reachable from
// nowhere but the host; a production master or mirror says --listen :80
// (see scripts/freebsd/pkgserve and scripts/systemd/pkgserve@.service).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"golang.org/x/sync/errgroup"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/edge"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/logsetup"
	"github.com/pkgcdn/pkgcdn/internal/objcache"
	"github.com/pkgcdn/pkgcdn/internal/version"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // a runtime failure
	exitUsage = 2 // bad flags or arguments
)

// commonFlags are the flags of both modes. A mode's own flags (originFlags,
// edgeFlags) must not reuse these names.
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "edge", EnvVars: cmdline.EnvVars("edge"),
			Usage: "run as a mirror (edge) of --upstream instead of as the master"},
		&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", EnvVars: cmdline.EnvVars("listen"),
			Usage: "address of the public HTTP listener, host:port (\":80\" for every interface)"},
		&cli.StringFlag{Name: "admin-listen", Value: "127.0.0.1:9090", EnvVars: cmdline.EnvVars("admin-listen"),
			Usage: "address of the admin listener (/healthz, /metrics); \"\" disables it"},
		&cli.BoolFlag{Name: "admin-pprof", EnvVars: cmdline.EnvVars("admin-pprof"),
			Usage: "also serve Go's profiler on the admin listener under /debug/pprof/ (for `go tool pprof`; keep the listener private)"},
		&cli.StringFlag{Name: "memory-cache", EnvVars: cmdline.EnvVars("memory-cache"),
			Usage: "memory that keeps small files, checked against their sha256, to answer them without the disk, like 64MiB (at most 1GiB; \"0\" turns it off) (default: 64MiB on the master, 8MiB on an edge)"},
		&cli.StringFlag{Name: "tls-cert", EnvVars: cmdline.EnvVars("tls-cert"),
			Usage: "PEM certificate file: serve HTTPS and HTTP/2 on --listen (needs --tls-key; reloaded on SIGHUP; default: plain HTTP)"},
		&cli.StringFlag{Name: "tls-key", EnvVars: cmdline.EnvVars("tls-key"),
			Usage: "PEM private key file of --tls-cert"},
		&cli.StringSliceFlag{Name: "trusted-key", EnvVars: cmdline.EnvVars("trusted-key"),
			Usage: "minisign public key (a .pub file or its base64 line) that signs manifests and SETS (repeatable)"},
		&cli.StringFlag{Name: "access-log", EnvVars: cmdline.EnvVars("access-log"),
			Usage: "access log in the Combined Log Format: a file (reopened on SIGHUP) or \"-\" for stderr (default: none)"},
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: cmdline.EnvVars("log-format"),
			Usage: "format of the diagnostic log on stderr: text or json"},
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: cmdline.EnvVars("log-level"),
			Usage: "least level logged: debug, info, warn or error"},
		&cli.DurationFlag{Name: "drain-timeout", Value: httpserve.DefaultDrainTimeout, EnvVars: cmdline.EnvVars("drain-timeout"),
			Usage: "on SIGTERM, how long in-flight downloads may take to finish"},
		&cli.DurationFlag{Name: "stall-timeout", Value: httpserve.DefaultStallTimeout, EnvVars: cmdline.EnvVars("stall-timeout"),
			Usage: "a response that makes no progress for this long is cut off (slow clients are fine; stalled ones are not)"},
		&cli.DurationFlag{Name: "long-poll-timeout", Value: 60 * time.Second, EnvVars: cmdline.EnvVars("long-poll-timeout"),
			Usage: "how long GET /.pkgcdn/sets?wait=ETAG holds a request before it answers 304"},
		&cli.IntFlag{Name: "max-waiters", Value: 10000, EnvVars: cmdline.EnvVars("max-waiters"),
			Usage: "most long-polls held at once; beyond, a long-poll is answered at once"},
	}
}

func main() {
	// Serving is per-request garbage on a small live heap (parsed
	// manifests, cache index): collecting at 400% growth instead of 100%
	// costs a few MB and buys about 15% more small files per second.
	// GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args))
}

func run(args []string) int {
	flags := commonFlags()
	flags = append(flags, originFlags()...)
	flags = append(flags, edgeFlags()...)
	flags = append(flags, demoFlags()...)
	app := &cli.App{
		Name:      "pkgserve",
		Usage:     "serve a pkgcdn repository: the master (default) or a mirror (--edge)",
		UsageText: "pkgserve --root DIR [flags]        (master)\npkgserve --edge --upstream URL [flags]   (mirror)",
		Version:   version.String(),
		Flags:     flags,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdline.Usagef("unexpected argument %q", c.Args().First())
			}
			if c.Bool("demo") {
				return runDemo(c)
			}
			if c.Bool("edge") {
				return runEdge(c)
			}
			return runOrigin(c)
		},
		// Errors are reported once, below, with their exit code.
		ExitErrHandler: func(*cli.Context, error) {},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "pkgserve:", err)
	var ue cmdline.UsageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

// newLogger builds the diagnostic logger on stderr from --log-format and
// --log-level.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	log, err := logsetup.New(os.Stderr, c.String("log-format"), c.String("log-level"))
	if err != nil {
		return nil, cmdline.UsageError{Err: err}
	}
	return log, nil
}

// service is what a mode serves: origin.Server or edge.Edge.
type service interface {
	http.Handler
	// Run keeps the service's state current until ctx is done.
	Run(ctx context.Context) error
	// Observe is the httpserve.ObserveFunc of its metrics.
	Observe(r *http.Request, status int, bytes int64, h http.Header)
	// ReleaseWaiters answers held long-polls, on shutdown.
	ReleaseWaiters()
}

// newRegistry returns a mode's Prometheus registry, holding the Go and
// process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// runService runs svc until c.Context is done or svc or serveMain fails:
// svc.Run, and serveMain serving svc with health and reg on the admin
// listener.
func runService(c *cli.Context, svc service, health *httpserve.Health, reg prometheus.Gatherer, log *slog.Logger) error {
	g, ctx := errgroup.WithContext(c.Context)
	g.Go(func() error { return svc.Run(ctx) })
	g.Go(func() error {
		return serveMain(ctx, c, serveOpts{
			Handler:    svc,
			Observe:    svc.Observe,
			OnShutdown: svc.ReleaseWaiters,
			Health:     health,
			Gatherer:   reg,
			Logger:     log,
		})
	})
	return g.Wait()
}

// serveOpts is what runService hands to serveMain.
type serveOpts struct {
	Handler    http.Handler
	Observe    httpserve.ObserveFunc // nil: none
	OnShutdown func()                // nil: none; release long-polls here
	Health     *httpserve.Health     // nil: always ok
	Gatherer   prometheus.Gatherer   // nil: the default registry
	Logger     *slog.Logger
}

// serveMain runs the public listener (--listen, --tls-cert/--tls-key,
// --access-log) and the admin listener (--admin-listen) until ctx is done
// (SIGTERM, SIGINT), then drains in-flight requests for up to
// --drain-timeout. SIGHUP reopens the access log and reloads the TLS
// certificate and key.
func serveMain(ctx context.Context, c *cli.Context, o serveOpts) (err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Catch SIGHUP before anything else: its default action is to exit.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var al *httpserve.AccessLog
	if p := c.String("access-log"); p != "" {
		if al, err = httpserve.OpenAccessLog(p); err != nil {
			return fmt.Errorf("access log: %w", err)
		}
		defer func() { err = errors.Join(err, al.Close()) }()
	}
	if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
		return cmdline.Usagef("--tls-cert and --tls-key go together")
	}
	pub, err := httpserve.New(httpserve.Config{
		Addr:         c.String("listen"),
		Handler:      o.Handler,
		TLSCertFile:  c.String("tls-cert"),
		TLSKeyFile:   c.String("tls-key"),
		StallTimeout: c.Duration("stall-timeout"),
		DrainTimeout: c.Duration("drain-timeout"),
		AccessLog:    al,
		Observe:      o.Observe,
		OnShutdown:   o.OnShutdown,
		Logger:       log,
	})
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.String("listen"), err)
	}
	var adm *httpserve.Server
	if a := c.String("admin-listen"); a != "" {
		adm, err = httpserve.New(httpserve.Config{
			Addr:    a,
			Handler: httpserve.AdminHandler(o.Health, o.Gatherer, c.Bool("admin-pprof")),
			Logger:  log,
		})
		if err != nil {
			return fmt.Errorf("admin listen %s: %w", a, err)
		}
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.Serve(ctx) })
	if adm != nil {
		g.Go(func() error { return adm.Serve(ctx) })
	}
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				if al != nil {
					if err := al.Reopen(); err != nil {
						log.Error("reopen access log", "err", err)
					} else {
						log.Info("access log reopened")
					}
				}
				if pub.TLS() {
					if err := pub.ReloadTLS(); err != nil {
						log.Error("reload TLS certificate, keeping the old one", "err", err)
					} else {
						log.Info("TLS certificate reloaded")
					}
				}
			}
		}
	})
	return g.Wait()
}

// memoryCache parses --memory-cache for origin.Config and edge.Config's
// MemoryCacheBytes: 0 for the mode's default, -1 for off.
func memoryCache(c *cli.Context) (int64, error) {
	v := c.String("memory-cache")
	if v == "" {
		return 0, nil
	}
	n, err := edge.ParseSize(v)
	if err != nil || n < 0 || n > objcache.MaxArenaBytes {
		return 0, cmdline.Usagef("--memory-cache %q: want a size like 64MiB, at most 1GiB, or 0 for none", v)
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}
