// Command pkgpublish publishes package sets: it makes signing keys, hashes a
// freshly built set and publishes it into a repository root or to a remote
// master, and lists, verifies, collects, rolls back and refreshes the sets
// of a root. Run `pkgpublish help` for the subcommands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/logsetup"
	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/internal/version"
	"github.com/pkgcdn/pkgcdn/layout"
)

// Exit codes. Scripts (cron) branch on them.
const (
	exitOK          = 0
	exitFailure     = 1   // anything else; the message says what
	exitUsage       = 2   // bad flags or arguments
	exitVerify      = 3   // verify found files that are not what their manifest says
	exitConflict    = 4   // root locked, another publish won, SETS changed, rollback refused: retry later
	exitAuth        = 5   // token or signing key refused
	exitSource      = 6   // the source tree is refused or changed while published
	exitInterrupted = 130 // SIGINT/SIGTERM
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default: a second one kills
		// at once (a kill at any instant is safe, just not tidy).
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// env is what every subcommand shares: where to write, and the logger
// built from the global flags.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	tty            bool // stderr is a terminal: draw progress bars
}

// run runs pkgpublish with args (args[0] is the program name) and returns
// the exit code. Tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, tty: isTerminal(stderr)}
	e.log = slog.New(slog.NewTextHandler(stderr, nil))
	err := e.app().RunContext(ctx, args)
	code := exitCode(ctx, err)
	if err != nil {
		e.log.Error("pkgpublish failed", "err", err)
	}
	return code
}

func (e *env) app() *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return cmdline.UsageError{Err: err} }
	app := &cli.App{
		Name:    "pkgpublish",
		Usage:   "publish package sets into a repository root or to a pkgcdn master",
		Version: version.String(),
		Writer:  e.stdout, ErrWriter: e.stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: cmdline.EnvVars("log-format"),
				Usage: "log format on stderr: text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: cmdline.EnvVars("log-level"),
				Usage: "least severe level logged: debug, info, warn or error"},
		},
		Before:         e.setupLog,
		ExitErrHandler: func(*cli.Context, error) {}, // run maps errors to exit codes
		OnUsageError:   onUsage,
		Commands: []*cli.Command{
			e.keygenCmd(), e.publishCmd(), e.verifyCmd(), e.listCmd(), e.gcCmd(), e.rollbackCmd(), e.refreshCmd(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = onUsage
	}
	return app
}

func (e *env) setupLog(c *cli.Context) error {
	log, err := logsetup.New(e.stderr, c.String("log-format"), c.String("log-level"))
	if err != nil {
		return cmdline.UsageError{Err: err}
	}
	e.log = log
	return nil
}

// errVerifyFailed means verify found problems (already reported on stdout).
var errVerifyFailed = errors.New("verification failed")

// exitCode maps an error to the exit code: the one place that does.
func exitCode(ctx context.Context, err error) int {
	var ue cmdline.UsageError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil: // whatever failed, it failed because we were told to stop
		return exitInterrupted
	case errors.As(err, &ue), errors.Is(err, publish.ErrConfig):
		return exitUsage
	case errors.Is(err, errVerifyFailed):
		return exitVerify
	case errors.Is(err, layout.ErrLocked), errors.Is(err, layout.ErrConflict), errors.Is(err, layout.ErrSetsChanged),
		errors.Is(err, publish.ErrConflict), errors.Is(err, publish.ErrSetsChanged), errors.Is(err, setid.ErrRollback):
		return exitConflict
	case errors.Is(err, publish.ErrUnauthorized), errors.Is(err, publish.ErrUntrustedKey), errors.Is(err, sign.ErrUnknownKey):
		return exitAuth
	case errors.Is(err, publish.ErrBadSource), errors.Is(err, publish.ErrSourceChanged), errors.Is(err, publish.ErrEmptySource):
		return exitSource
	}
	return exitFailure
}

// parseDuration is time.ParseDuration plus a "d" (24 h) unit: "30d", "1d12h".
func parseDuration(s string) (time.Duration, error) {
	var total time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		days, err := strconv.Atoi(s[:i])
		if err != nil || days < 0 {
			return 0, fmt.Errorf("duration %q: bad day count", s)
		}
		total = time.Duration(days) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return total, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	return total + d, nil
}

// durationFlag returns a duration flag's value, parsed by parseDuration.
func durationFlag(c *cli.Context, name string) (time.Duration, error) {
	d, err := parseDuration(c.String(name))
	if err != nil || d <= 0 {
		return 0, cmdline.Usagef("--%s %q: want a positive duration such as 72h or 30d", name, c.String(name))
	}
	return d, nil
}

// openRoot opens the --root flag's repository root.
func openRoot(c *cli.Context) (*layout.Root, error) {
	dir := c.String("root")
	if dir == "" {
		return nil, cmdline.Usagef("--root is required")
	}
	return layout.Open(dir)
}

// setFlag returns the --set flag, validated.
func setFlag(c *cli.Context) (string, error) {
	set := c.String("set")
	if set == "" {
		return "", cmdline.Usagef("--set is required")
	}
	if err := setid.ValidateName(set); err != nil {
		return "", cmdline.UsageError{Err: err}
	}
	return set, nil
}

// signer loads the --key flag's private key.
func signer(c *cli.Context) (*sign.Signer, error) {
	if c.String("key") == "" {
		return nil, cmdline.Usagef("--key is required")
	}
	return sign.LoadSigner(c.String("key"))
}

// noArgs refuses positional arguments.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return cmdline.Usagef("unexpected argument %q", c.Args().First())
	}
	return nil
}
