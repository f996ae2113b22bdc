package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/urfave/cli/v2"

	"github.com/pkgcdn/pkgcdn/internal/cmdline"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/publish"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

func (e *env) verifyCmd() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check the signatures and every file (size, sha256) of the live set(s)",
		Description: "With --root, checks the live set of --set (or of every set) on disk. With --url, " +
			"audits a running master or mirror over HTTP. Prints one line per problem " +
			"(set, ID, path, what was wanted and found) and exits 3 if there is any.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			rootFlag(),
			&cli.StringFlag{Name: "url", EnvVars: cmdline.EnvVars("url"), Usage: "base URL of a master or mirror to audit over HTTP"},
			&cli.IntFlag{Name: "sample", EnvVars: cmdline.EnvVars("sample"), Usage: "with --url: check only N files per set, chosen at random (0: all)"},
			&cli.StringSliceFlag{Name: "pubkey", EnvVars: cmdline.EnvVars("pubkey"), Usage: "trusted public key file (repeatable; required)"},
			setNameFlag("set to check (default: every set)"),
		},
		Action: e.verify,
	}
}

func (e *env) verify(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if len(c.StringSlice("pubkey")) == 0 {
		return cmdline.Usagef("--pubkey is required")
	}
	v, err := sign.NewVerifier(c.StringSlice("pubkey")...)
	if err != nil {
		return err
	}
	if c.String("set") != "" {
		if _, err := setFlag(c); err != nil {
			return err
		}
	}
	switch {
	case (c.String("root") == "") == (c.String("url") == ""):
		return cmdline.Usagef("give exactly one of --root and --url")
	case c.String("url") != "":
		return e.verifyURL(c, v)
	}
	root, err := openRoot(c)
	if err != nil {
		return err
	}
	sets := []string{c.String("set")}
	if sets[0] == "" {
		if sets, err = root.SetNames(); err != nil {
			return err
		}
		if len(sets) == 0 {
			return fmt.Errorf("verify %s: no set published", root.Dir)
		}
	}
	problems := 0
	announced, err := e.verifySETS(root, v)
	if err != nil {
		fmt.Fprintf(e.stdout, "FAIL SETS: %v\n", err)
		problems++
	}
	for _, set := range sets {
		rep, err := root.Verify(c.Context, set, setid.ID{}, v)
		if err != nil {
			fmt.Fprintf(e.stdout, "FAIL %s: %v\n", set, err)
			problems++
			continue
		}
		if a, ok := announced[set]; announced != nil && (!ok || a != rep.ID) {
			fmt.Fprintf(e.stdout, "FAIL %s %s: SETS announces %q, not the live set (rerun publish to repair)\n", set, rep.ID, a.String())
			problems++
		}
		if rep.Expired {
			fmt.Fprintf(e.stdout, "WARN %s %s: manifest expired: run pkgpublish refresh\n", set, rep.ID)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(e.stdout, "FAIL %s %s %s: %s\n", set, rep.ID, p.Path, describe(p.Err))
			problems++
		}
		if rep.OK() {
			fmt.Fprintf(e.stdout, "OK %s %s: %d files, %d bytes\n", set, rep.ID, rep.Files, rep.Bytes)
		}
	}
	if problems > 0 {
		return fmt.Errorf("%w: %d problems", errVerifyFailed, problems)
	}
	return nil
}

// verifySETS checks SETS' signature and returns what it announces.
func (e *env) verifySETS(root *layout.Root, v *sign.Verifier) (map[string]setid.ID, error) {
	data, sig, err := root.Sets()
	if err != nil {
		return nil, err
	}
	sets, err := manifest.OpenSets(data, sig, v)
	if err != nil {
		return nil, err
	}
	m := map[string]setid.ID{}
	for _, s := range sets {
		m[s.Set] = s.ID
	}
	return m, nil
}

// describe spells out a file problem: want and got size or sha256.
func describe(err error) string {
	var me *digest.MismatchError
	var se *digest.SizeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("size: want %d, got %d", se.Want, se.Got)
	case errors.As(err, &me):
		return fmt.Sprintf("sha256: want %s, got %s", me.Want, me.Got)
	case errors.Is(err, fs.ErrNotExist):
		return "missing"
	}
	return err.Error()
}

// verifyURL audits a running master or mirror over HTTP.
func (e *env) verifyURL(c *cli.Context, v *sign.Verifier) error {
	cfg := publish.AuditConfig{URL: c.String("url"), Verifier: v, Sample: c.Int("sample")}
	if s := c.String("set"); s != "" {
		cfg.Sets = []string{s}
	}
	rep, err := publish.Audit(c.Context, cfg)
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(e.stdout, "FAIL %s %s %s: %s\n", p.Set, p.ID, p.Path, describe(p.Err))
	}
	bad := map[string]bool{}
	for _, p := range rep.Problems {
		bad[p.Set] = true
	}
	for _, s := range rep.Sets {
		if s.Expired {
			fmt.Fprintf(e.stdout, "WARN %s %s: manifest expired\n", s.Set, s.ID)
		}
		if !bad[s.Set] {
			fmt.Fprintf(e.stdout, "OK %s %s: %d of %d files checked\n", s.Set, s.ID, s.Checked, s.Files)
		}
	}
	if len(rep.Sets) == 0 {
		return fmt.Errorf("%w: no set to audit", errVerifyFailed)
	}
	if len(rep.Problems) > 0 {
		return fmt.Errorf("%w: %d problems", errVerifyFailed, len(rep.Problems))
	}
	return nil
}
