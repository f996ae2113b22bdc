// Package demo runs pkgcdn's guided tour on loopback: it generates a sample
// FreeBSD-style package set, publishes it over HTTP to a master, puts an edge
// in front of the master, fetches through the edge (a miss, then a hit),
// publishes a second set with a few packages rebuilt, and shows the edge
// switching and what it had to fetch again — narrated for an operator. It
// runs the real pkgserve and pkgpublish binaries as child processes.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// Config configures Run.
type Config struct {
	// BinDir holds the pkgserve and pkgpublish binaries. If empty, the
	// directory of the running executable.
	BinDir string
	// Dir is the working directory (keys, master root, cache, sample set).
	// If empty, a new temporary directory, removed at the end.
	Dir string
	// MasterAddr and EdgeAddr are the listen addresses. If empty,
	// 127.0.0.1:8080 and 127.0.0.1:8081, or free ports if those are taken.
	MasterAddr, EdgeAddr string
	// Out receives the narration. If nil, os.Stdout.
	Out io.Writer
	// Stay keeps the servers running after the tour until ctx is done.
	Stay bool
}

// Set is the name of the demo's package set.
const Set = "FreeBSD:14:amd64/latest"

// Run runs the tour. It returns when the tour is over (and, with Stay, when
// ctx is cancelled), having stopped every process it started.
func Run(ctx context.Context, cfg Config) (err error) {
	d, err := newTour(cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.close()) }()
	return d.run(ctx)
}

type tour struct {
	cfg       Config
	out       io.Writer
	dir       string
	tmp       bool
	procs     []*child
	masterURL string
	edgeURL   string
	edgeAdmin string
	key, pub  string
	token     string
	src       string
}

func newTour(cfg Config) (*tour, error) {
	d := &tour{cfg: cfg, out: cfg.Out}
	if d.out == nil {
		d.out = os.Stdout
	}
	if cfg.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		d.cfg.BinDir = filepath.Dir(exe)
	}
	for _, b := range []string{"pkgserve", "pkgpublish"} {
		if _, err := os.Stat(filepath.Join(d.cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("demo needs %s next to this binary (run `make demo`, which builds bin/): %w", b, err)
		}
	}
	d.dir = cfg.Dir
	if d.dir == "" {
		dir, err := os.MkdirTemp("", "pkgcdn-demo-")
		if err != nil {
			return nil, err
		}
		d.dir, d.tmp = dir, true
	}
	return d, nil
}

func (d *tour) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *tour) step(n int, title string) { d.say("\n== %d. %s", n, title) }

func (d *tour) run(ctx context.Context) error {
	d.say("pkgcdn demo — working directory %s", d.dir)

	d.step(1, "The build cluster produces a package set")
	d.src = filepath.Join(d.dir, "build")
	pkgs, st, err := sampleset.Repo(d.src, sampleset.RepoConfig{Seed: 1, Packages: 120, TotalBytes: 24 << 20})
	if err != nil {
		return fmt.Errorf("generate sample set: %w", err)
	}
	d.say("generated %d packages, %d files, %.1f MiB in %s (meta.conf, packagesite.pkg, data.pkg, All/*.pkg, Latest/pkg.pkg)",
		len(pkgs), st.Files, float64(st.Bytes)/(1<<20), d.src)

	d.step(2, "A signing key for the set (pkgpublish keygen)")
	prefix := filepath.Join(d.dir, "keys", "pkgcdn")
	if err := os.MkdirAll(filepath.Dir(prefix), 0o700); err != nil {
		return err
	}
	if _, err := d.runTool(ctx, "pkgpublish", "keygen", "--out", prefix); err != nil {
		return err
	}
	d.key, d.pub = prefix+".key", prefix+".pub"
	d.token = filepath.Join(d.dir, "keys", "publish-token")
	if err := os.WriteFile(d.token, []byte(randomToken()+"\n"), 0o600); err != nil {
		return err
	}
	d.say("private key %s (mode 0600, stays on the build host); public key %s (goes to every mirror)", d.key, d.pub)

	d.step(3, "Start the master (pkgserve --root)")
	root := filepath.Join(d.dir, "master-root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	maddr := pickAddr(d.cfg.MasterAddr, "127.0.0.1:8080")
	d.masterURL = "http://" + maddr
	if err := d.startServer(ctx, "master", d.masterURL+"/.pkgcdn/sets", "--root", root, "--listen", maddr,
		"--admin-listen", pickAddr("", "127.0.0.1:9080"), "--publish-token-file", d.token, "--trusted-key", d.pub); err != nil {
		return err
	}
	d.say("master serving %s from %s", d.masterURL, root)

	d.step(4, "Publish the set over HTTP (pkgpublish publish --master)")
	t0 := time.Now()
	id1, err := d.publish(ctx)
	if err != nil {
		return err
	}
	d.say("published set %s as ID %s in %s: every file uploaded once, verified by sha256, manifest signed, `current` switched atomically",
		Set, id1, time.Since(t0).Round(time.Millisecond))

	d.step(5, "Start a mirror (pkgserve --edge) in front of the master")
	eaddr := pickAddr(d.cfg.EdgeAddr, "127.0.0.1:8081")
	d.edgeURL = "http://" + eaddr
	d.edgeAdmin = "http://" + pickAddr("", "127.0.0.1:9081")
	if err := d.startServer(ctx, "edge", d.edgeURL+"/.pkgcdn/sets", "--edge", "--upstream", d.masterURL,
		"--trusted-key", d.pub, "--cache-dir", filepath.Join(d.dir, "edge-cache"), "--cache-size", "1GiB",
		"--listen", eaddr, "--admin-listen", strings.TrimPrefix(d.edgeAdmin, "http://")); err != nil {
		return err
	}
	if err := waitSet(ctx, d.edgeURL, id1); err != nil {
		return err
	}
	d.say("edge %s verified the signed SETS and manifest of %s and holds ID %s; its cache is empty", d.edgeURL, Set, id1)

	d.step(6, "A client fetches through the edge: first a miss, then a hit")
	d.say("(at the switch the edge prefetched the catalogue — meta.conf, packagesite.*, data.* — so pkg update hits at once)")
	probe := []string{"meta.conf", "packagesite.pkg", pkgs[len(pkgs)/2].RepoPath, "Latest/pkg.pkg"}
	for _, p := range probe {
		if err := d.fetch(ctx, p); err != nil {
			return err
		}
	}
	for _, p := range probe[:2] {
		if err := d.fetch(ctx, p); err != nil {
			return err
		}
	}

	d.step(7, "Tomorrow's build: a few packages rebuilt, catalogue rewritten")
	changes, _, err := sampleset.BumpVersions(d.src, 5, 2)
	if err != nil {
		return fmt.Errorf("rebuild sample set: %w", err)
	}
	for _, c := range changes {
		d.say("  %s %s → %s", c.Name, c.OldVersion, c.NewVersion)
	}
	t0 = time.Now()
	id2, err := d.publish(ctx)
	if err != nil {
		return err
	}
	d.say("published ID %s in %s: only the changed files were uploaded", id2, time.Since(t0).Round(time.Millisecond))
	if err := waitSet(ctx, d.edgeURL, id2); err != nil {
		return err
	}
	d.say("edge switched to %s %s after publish (it long-polls the master's /.pkgcdn/sets)", id2, time.Since(t0).Round(time.Millisecond))

	d.step(8, "After the switch: unchanged files are still hits, changed ones are fetched once")
	for _, p := range append(probe, changes[0].NewPath) {
		if err := d.fetch(ctx, p); err != nil {
			return err
		}
	}
	d.say("a client whose catalogue is one set old still gets %s (grace for the previous set):", changes[0].OldPath)
	if err := d.fetch(ctx, changes[0].OldPath); err != nil {
		return err
	}

	d.say("\nTry it yourself:")
	d.say("  curl -sI %s/%s/meta.conf", d.edgeURL, Set)
	d.say("  curl -s  %s/.pkgcdn/sets", d.edgeURL)
	d.say("  curl -s  %s/metrics | grep pkgcdn_", d.edgeAdmin)
	d.say("  %s verify --url %s --pubkey %s", filepath.Join(d.cfg.BinDir, "pkgpublish"), d.edgeURL, d.pub)
	d.say("  pkg.conf: pkgcdn: { url: \"%s/${ABI}/latest\", signature_type: \"none\" }", d.edgeURL)
	if !d.cfg.Stay {
		return nil
	}
	d.say("\nmaster %s and edge %s keep running; Ctrl-C stops everything.", d.masterURL, d.edgeURL)
	<-ctx.Done()
	d.say("stopping")
	return nil
}

// fetch GETs a set path through the edge and narrates the cache outcome.
func (d *tour) fetch(ctx context.Context, rel string) error {
	url := d.edgeURL + "/" + Set + "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", rel, err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("fetch %s: %w", rel, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: %s", rel, resp.Status)
	}
	d.say("  GET %-48s %7d bytes  %-28s %s", rel, n, describe(resp.Header.Get("Cache-Status")), time.Since(t0).Round(10*time.Microsecond))
	return nil
}

// describe turns an RFC 9211 Cache-Status into words.
func describe(cs string) string {
	switch {
	case strings.Contains(cs, "hit"):
		return "hit (served from the edge's disk)"
	case strings.Contains(cs, "fwd=stale"), strings.Contains(cs, "revalidated"):
		return "revalidated with upstream"
	case strings.Contains(cs, "collapsed"):
		return "joined a fetch already in progress"
	case strings.Contains(cs, "fwd="):
		return "miss (fetched from master)"
	}
	return "Cache-Status: " + cs
}

func (d *tour) publish(ctx context.Context) (setid.ID, error) {
	// Its own seen-IDs file: every demo's master is new at the same address.
	out, err := d.runTool(ctx, "pkgpublish", "publish", "--master", d.masterURL, "--token-file", d.token,
		"--seen-file", filepath.Join(d.dir, "seen-ids.json"), "--set", Set, "--key", d.key, d.src)
	if err != nil {
		return setid.ID{}, err
	}
	id, err := setid.Parse(strings.TrimSpace(out))
	if err != nil {
		return setid.ID{}, fmt.Errorf("pkgpublish printed %q, not a set ID", out)
	}
	return id, nil
}

// runTool runs a binary to completion and returns its stdout.
func (d *tour) runTool(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(d.cfg.BinDir, name), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", name, args[0], err, stderr.String())
	}
	return stdout.String(), nil
}

// child is a server process; its log goes to DIR/<name>.log.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

func (d *tour) startServer(ctx context.Context, name, ready string, args ...string) error {
	logPath := filepath.Join(d.dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(d.cfg.BinDir, "pkgserve"), args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { _ = cmd.Wait(); close(c.done) }()
	d.procs = append(d.procs, c)
	d.say("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
	// Wait for the port: polling is the only signal across processes.
	for {
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited at start-up: see %s\n%s", name, logPath, tail(logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *tour) close() error {
	var wg sync.WaitGroup
	for _, c := range d.procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
			c.log.Close()
		}()
	}
	wg.Wait()
	if d.tmp {
		return os.RemoveAll(d.dir)
	}
	return nil
}

// waitSet long-polls base's SETS until it lists Set at id or later.
func waitSet(ctx context.Context, base string, id setid.ID) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	etag := ""
	for {
		url := base + "/.pkgcdn/sets"
		if etag != "" {
			url += "?wait=" + strings.Trim(etag, `"`)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("wait for %s at %s: %w", id, base, err)
		}
		sets, perr := setid.ParseSets(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && perr == nil {
			if e, ok := sets.Lookup(Set); ok && !id.After(e.ID) {
				return nil
			}
		}
		if et := resp.Header.Get("ETag"); et != "" && et != etag {
			etag = et
			continue
		}
		select { // the server answered without waiting: don't spin
		case <-ctx.Done():
			return fmt.Errorf("%s did not switch to %s: %w", base, id, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pickAddr returns want, or def if free, or else a free loopback port.
func pickAddr(want, def string) string {
	if want != "" {
		return want
	}
	if l, err := net.Listen("tcp", def); err == nil {
		l.Close()
		return def
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return def
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 20 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
