// Command loadgen drives internal/loadgen from scripts/bench/run.sh.
//
//	loadgen hammer   [-conns 64] [-duration 10s] [-max N] URL... | -base URL -paths FILE
//	loadgen distinct [-conns 32] URL... | -base URL -paths FILE
//	loadgen herd     [-clients 50] [-sha256 HEX] [-size N] [-hash-clients N] URL
//	loadgen waitfor  -sha256 HEX [-interval 5ms] [-timeout 60s] URL
//	loadgen ports    N
//
// -paths names a file of slash-separated paths, one a line, appended
// (escaped) to -base. Results are one JSON object on stdout (-o json, the
// default; durations in nanoseconds) or aligned text (-o text). waitfor
// prints the Unix time in seconds (with nanoseconds) at which URL first
// served the given bytes; ports prints N free loopback TCP ports.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// run runs one loadgen command, writing its result to stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: loadgen hammer|distinct|herd|waitfor|ports [flags] [URL...]")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("loadgen "+cmd, flag.ContinueOnError)
	conns := fs.Int("conns", 0, "hammer: connections (default 64); distinct: requests in flight (default 32)")
	duration := fs.Duration("duration", 0, "hammer: run time (default 10s unless -max)")
	maxReq := fs.Int64("max", 0, "hammer: stop after this many requests")
	clients := fs.Int("clients", 50, "herd: clients released together")
	sha := fs.String("sha256", "", "herd, waitfor: expected sha256 of the body (hex)")
	size := fs.Int64("size", 0, "herd: expected body size in bytes")
	hashing := fs.Int("hash-clients", 0, "herd: how many clients hash their body (default: all)")
	interval := fs.Duration("interval", 5*time.Millisecond, "waitfor: poll interval")
	timeout := fs.Duration("timeout", time.Minute, "waitfor: give up after")
	base := fs.String("base", "", "base URL for -paths")
	paths := fs.String("paths", "", "file of paths to append to -base, one a line")
	format := fs.String("o", "json", "output: json or text")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	urls := fs.Args()
	if *paths != "" {
		more, err := readPaths(*base, *paths)
		if err != nil {
			return err
		}
		urls = append(urls, more...)
	}
	var want digest.SHA256
	if *sha != "" {
		var err error
		if want, err = digest.Parse(*sha); err != nil {
			return fmt.Errorf("-sha256: %w", err)
		}
	}

	var out any
	switch cmd {
	case "hammer":
		res, err := loadgen.Hammer(ctx, loadgen.HammerConfig{URLs: urls, Conns: *conns, Duration: *duration, MaxRequests: *maxReq})
		if err != nil {
			return err
		}
		out = res
	case "distinct":
		res, err := loadgen.Distinct(ctx, loadgen.DistinctConfig{URLs: urls, Concurrency: *conns})
		if err != nil {
			return err
		}
		out = res
	case "herd":
		if len(urls) != 1 {
			return errors.New("herd: give exactly one URL")
		}
		res, err := loadgen.Herd(ctx, loadgen.HerdConfig{URL: urls[0], Clients: *clients, SHA256: want, Size: *size, HashClients: *hashing})
		if err != nil {
			return err
		}
		out = res
	case "waitfor":
		if len(urls) != 1 || want.IsZero() {
			return errors.New("waitfor: give one URL and -sha256")
		}
		at, err := loadgen.WaitBody(ctx, nil, urls[0], want, *interval, *timeout)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d.%09d\n", at.Unix(), at.Nanosecond())
		return nil
	case "ports":
		n := 1
		if len(urls) > 0 {
			var err error
			if n, err = strconv.Atoi(urls[0]); err != nil {
				return fmt.Errorf("ports: %w", err)
			}
		}
		return freePorts(stdout, n)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	if *format == "text" {
		return printText(stdout, out)
	}
	return json.NewEncoder(stdout).Encode(out)
}

// readPaths reads paths, one a line, and joins each, escaped, to base.
func readPaths(base, name string) ([]string, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	base = strings.TrimSuffix(base, "/")
	var urls []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" {
			continue
		}
		u := url.URL{Path: "/" + strings.TrimPrefix(p, "/")}
		urls = append(urls, base+u.EscapedPath())
	}
	return urls, sc.Err()
}

// freePorts prints n distinct free loopback ports, holding each listener
// until all are chosen so that no port is printed twice.
func freePorts(w io.Writer, n int) error {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close() // only reserved the port
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Fprintln(w, l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// printText writes a result as aligned text.
func printText(w io.Writer, v any) error {
	switch r := v.(type) {
	case loadgen.Result:
		fmt.Fprintf(w, "requests   %12d\nerrors     %12d\nbytes      %12d\nduration   %12s\nreq/s      %12.0f\nMB/s       %12.1f\np50        %12s\np99        %12s\nmax        %12s\n",
			r.Requests, r.Errors, r.Bytes, r.Duration.Round(time.Millisecond), r.ReqPerSec, r.MBPerSec, r.P50, r.P99, r.Max)
		if r.FirstError != "" {
			fmt.Fprintf(w, "first error %s\n", r.FirstError)
		}
	case loadgen.HerdResult:
		fmt.Fprintf(w, "%6s %6s %12s %12s %12s %s\n", "client", "status", "bytes", "ttfb", "total", "error")
		for i, c := range r.Clients {
			fmt.Fprintf(w, "%6d %6d %12d %12s %12s %s\n", i, c.Status, c.Bytes, c.TTFB.Round(time.Microsecond), c.Total.Round(time.Microsecond), c.Err)
		}
		fmt.Fprintf(w, "ok %d, failed %d; median ttfb %s (max %s), median total %s (max %s)\n",
			r.OK, r.Failed, r.MedianTTFB.Round(time.Microsecond), r.MaxTTFB.Round(time.Microsecond), r.MedianTotal.Round(time.Microsecond), r.MaxTotal.Round(time.Microsecond))
	default:
		return json.NewEncoder(w).Encode(v)
	}
	return nil
}
