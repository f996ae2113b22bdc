package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/objcache"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

// Defaults for the zero values of Config.
const (
	DefaultPoll             = 5 * time.Minute
	DefaultFirstByteTimeout = 10 * time.Second
	DefaultStallTimeout     = 30 * time.Second
	DefaultNotifyInterval   = time.Second
	DefaultStickyFor        = time.Minute
	DefaultLongPollTimeout  = 55 * time.Second
	DefaultPrefetch         = 4
	DefaultMaxWaiters       = 10000
	DefaultNegativeTTL      = 10 * time.Second
	DefaultMemoryCacheBytes = 8 << 20
)

// failoverBudget bounds the time spent trying upstreams in turn before an
// answer: below pkg's 30 s FETCH_TIMEOUT.
const failoverBudget = 20 * time.Second

// Cache-Control values, the same as the master's.
const (
	ccSetFile   = "public, no-cache" // set paths, and manifests (a refresh re-signs one under its URL)
	ccImmutable = "public, max-age=31536000, immutable"
	ccSets      = "public, max-age=5"
)

// MaxNotifyBytes bounds the body of a push notice.
const MaxNotifyBytes = 4 << 10

// Config configures an Edge.
type Config struct {
	// Upstreams are the base URLs of the upstreams, tried in order
	// (failover). Required.
	Upstreams []string
	// Verifier, if set, makes the edge manifest-aware: it trusts only SETS
	// files and manifests signed by its keys. If nil, plain HTTP mode.
	Verifier *sign.Verifier
	// Cache stores the objects. Required. The caller closes it after Run
	// returned.
	Cache *cache.Cache
	// StateDir holds verified SETS and manifests (manifest-aware mode) or
	// the set-ID generation (plain mode) across restarts. Required.
	StateDir string
	// UpstreamCAFile, if set, is a PEM bundle that replaces the system roots
	// for https upstreams. If empty, the system roots.
	UpstreamCAFile string
	// Transport, if set, is used for upstream requests (tests); it overrides
	// UpstreamCAFile and FirstByteTimeout. If nil, a transport is built.
	Transport http.RoundTripper
	// FirstByteTimeout bounds the wait for an upstream's response headers
	// before failing over: below pkg's 30 s FETCH_TIMEOUT so the client
	// still gets an answer. If zero, 10s.
	FirstByteTimeout time.Duration
	// StallTimeout fails an upstream body that sends nothing for this long.
	// If zero, 30s.
	StallTimeout time.Duration
	// Poll is the interval of re-reading the upstream's SETS (or the
	// set-ID URL in plain mode). If zero, 5m.
	Poll time.Duration
	// NoLongPoll disables the long-poll on the upstream's /.pkgcdn/sets
	// (manifest-aware mode). If false, the edge long-polls.
	NoLongPoll bool
	// LongPollTimeout is how long a downstream ?wait= request is held
	// before it is answered 304. If zero, 55s.
	LongPollTimeout time.Duration
	// SetIDURL (plain mode) names the file whose change means "new set":
	// an absolute URL, or a path ("/.pkgcdn/sets") resolved against the
	// upstreams. If empty, freshness follows RFC 9111.
	SetIDURL string
	// NegativeTTL is how long an upstream 404 is remembered (plain mode,
	// and bare object URLs in manifest-aware mode); with SetIDURL it holds
	// until the set changes, at most 30 times this. If zero, 10s; if
	// negative, 404s are not remembered.
	NegativeTTL time.Duration
	// NotifyInterval rate-limits re-reads caused by push notices: at most
	// one per interval. If zero, 1s.
	NotifyInterval time.Duration
	// StickyFor is how long requests stay with a fallback upstream before
	// the first is tried again. If zero, 1m.
	StickyFor time.Duration
	// Prefetch is how many catalogue files are filled at once after a set
	// switch. If zero, 4; if negative, no prefetch.
	Prefetch int
	// MaxWaiters caps concurrent downstream ?wait= long-polls; beyond it a
	// long-poll is answered 304 at once with Retry-After. If zero, 10000.
	MaxWaiters int
	// MemoryCacheBytes is the memory (outside the Go heap) that keeps
	// small objects (at most 16 KiB each) of the disk cache in
	// manifest-aware mode: a hit on one is answered from memory, header
	// and body in one write, with no file opened. Each was checked
	// against its sha256 when it was put there. If zero, 8 MiB; if
	// negative, none.
	MemoryCacheBytes int64
	// Health, if set, is told when the edge is degraded (a live manifest
	// expired, the upstream unreachable) and when it recovers (/healthz).
	Health *httpserve.Health
	// Registerer, if set, gets the edge's Prometheus metrics. If nil, they
	// are kept but not registered.
	Registerer prometheus.Registerer
	// Logger receives events. If nil, nothing is logged.
	Logger *slog.Logger
	// Clock returns the current time (manifest expiry, freshness). If nil,
	// time.Now.
	Clock func() time.Time
}

// Edge is the edge's http.Handler. Create it with New, start its background
// work with Run. It is safe for concurrent use.
type Edge struct {
	cfg  Config
	log  *slog.Logger
	now  func() time.Time
	pool *pool
	lp   *pool // long-poll: no first-byte timeout
	met  *metrics
	mem  *objcache.Cache // small objects in memory (manifest mode); nil if off

	snap atomic.Pointer[snapshot] // manifest mode: what requests are answered from

	gen     atomic.Uint64 // plain mode with SetIDURL: the set-ID generation
	setID   plainState    // plain mode: guarded by the tracker goroutine
	kick    chan struct{} // wakes the tracker (notify, long-poll); cap 1
	stop    chan struct{} // closed by ReleaseWaiters
	stopped sync.Once
	bg      sync.WaitGroup // prefetches
	waiters atomic.Int64   // downstream long-polls held

	negMu sync.Mutex          // guards neg
	neg   map[string]negEntry // plain mode: remembered 404s

	versMu    sync.Mutex        // guards vers, versDirty
	vers      map[string]uint64 // plain mode: key version of replaced paths (see plainKey)
	versDirty bool              // vers changed since saved

	degradedMu   sync.Mutex      // guards degradedKeys
	degradedKeys map[string]bool // Health keys set by the last update
}

// New checks cfg, loads what a previous run verified, and returns an Edge
// ready to serve (from that state) before Run has reached the upstream.
func New(cfg Config) (*Edge, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("edge: no upstream")
	}
	if cfg.Cache == nil {
		return nil, errors.New("edge: no cache")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("edge: no state directory")
	}
	if cfg.FirstByteTimeout == 0 {
		cfg.FirstByteTimeout = DefaultFirstByteTimeout
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.LongPollTimeout == 0 {
		cfg.LongPollTimeout = DefaultLongPollTimeout
	}
	if cfg.NotifyInterval == 0 {
		cfg.NotifyInterval = DefaultNotifyInterval
	}
	if cfg.StickyFor == 0 {
		cfg.StickyFor = DefaultStickyFor
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.MaxWaiters == 0 {
		cfg.MaxWaiters = DefaultMaxWaiters
	}
	if cfg.MemoryCacheBytes == 0 {
		cfg.MemoryCacheBytes = DefaultMemoryCacheBytes
	}
	e := &Edge{cfg: cfg, log: cfg.Logger, now: cfg.Clock,
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	var bases []*url.URL
	for _, s := range cfg.Upstreams {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("edge: upstream %q: not an http(s) URL", s)
		}
		bases = append(bases, u)
	}
	rt, lrt := cfg.Transport, cfg.Transport
	if rt == nil {
		var err error
		if rt, err = newTransport(cfg.UpstreamCAFile, cfg.FirstByteTimeout); err != nil {
			return nil, err
		}
		if lrt, err = newTransport(cfg.UpstreamCAFile, 0); err != nil {
			return nil, err
		}
	}
	e.pool = &pool{bases: bases, client: &http.Client{Transport: rt}, stall: cfg.StallTimeout,
		stickyFor: cfg.StickyFor, budget: failoverBudget, now: e.now}
	e.lp = &pool{bases: bases, client: &http.Client{Transport: lrt}, stickyFor: cfg.StickyFor, now: e.now}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if e.manifestMode() && cfg.MemoryCacheBytes > 0 {
		e.mem = objcache.New(objcache.Config{MaxBytes: cfg.MemoryCacheBytes, MaxObjectBytes: memObjectMax})
	}
	e.met = newMetrics(e)
	if cfg.Registerer != nil {
		if err := e.met.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("edge: register metrics: %w", err)
		}
	}
	e.snap.Store(newSnapshot())
	if e.manifestMode() {
		if err := e.loadState(); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	} else if err := e.loadPlainState(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	return e, nil
}

// newTransport returns the upstream transport: no transparent gzip (the
// cache keeps the exact bytes), a first-byte timeout, and the CA bundle.
func newTransport(caFile string, firstByte time.Duration) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	t.ResponseHeaderTimeout = firstByte
	t.MaxIdleConnsPerHost = 64
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("upstream CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream CA %s: no PEM certificate", caFile)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

func (e *Edge) manifestMode() bool { return e.cfg.Verifier != nil }

// Run follows the upstream (set tracking in manifest-aware mode, the set-ID
// URL in plain mode) until ctx is cancelled, then waits for its goroutines
// and returns nil. Failures to reach the upstream are logged and retried:
// the edge keeps serving what it holds.
func (e *Edge) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { e.track(ctx) })
	if e.manifestMode() && !e.cfg.NoLongPoll {
		wg.Go(func() { e.longPoll(ctx) })
	}
	if !e.manifestMode() {
		wg.Go(func() { e.saveVersionsLoop(ctx) })
	}
	wg.Wait()
	e.bg.Wait()
	return nil
}

// ReleaseWaiters answers every held ?wait= long-poll now and makes new ones
// return at once: call it when shutdown starts (httpserve.Config.OnShutdown).
func (e *Edge) ReleaseWaiters() { e.stopped.Do(func() { close(e.stop) }) }

// Kick asks the tracker to re-read the upstream now (as a push notice does).
func (e *Edge) Kick() {
	select {
	case e.kick <- struct{}{}:
	default: // one pending kick is enough
	}
}

// track is the single goroutine that changes what the edge serves: on start,
// every Poll, and on a kick (rate-limited to one per NotifyInterval).
func (e *Edge) track(ctx context.Context) {
	t := time.NewTicker(e.cfg.Poll)
	defer t.Stop()
	for {
		e.update(ctx)
		last := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.kick:
		}
		// Rate limit: a flood of notices costs at most one re-read per
		// interval, while a notice after a quiet spell is acted on at once.
		if d := time.Until(last.Add(e.cfg.NotifyInterval)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
	}
}

func (e *Edge) update(ctx context.Context) {
	var err error
	if e.manifestMode() {
		err = e.refresh(ctx)
		e.met.observeSets()
	} else if e.cfg.SetIDURL != "" {
		err = e.pollSetID(ctx)
	}
	if ctx.Err() != nil {
		return
	}
	reasons := map[string]string{}
	if err != nil {
		e.log.Warn("upstream update failed", "err", err)
		reasons["edge-upstream"] = "upstream update failed: " + err.Error()
	}
	now := e.now()
	for name, st := range e.snap.Load().sets {
		if err := st.expired(name, now); err != nil {
			reasons["edge-expired:"+name] = err.Error()
			e.log.Warn("live manifest expired, still serving", "set", name, "set_id", st.live.ID.String())
		}
	}
	e.setHealth(reasons)
}

// setHealth reports the degraded conditions of the last update to
// Config.Health, clearing the ones that went away.
func (e *Edge) setHealth(reasons map[string]string) {
	e.degradedMu.Lock()
	defer e.degradedMu.Unlock()
	h := e.cfg.Health
	for k := range e.degradedKeys {
		if _, ok := reasons[k]; !ok && h != nil {
			h.ClearDegraded(k)
		}
	}
	e.degradedKeys = map[string]bool{}
	for k, v := range reasons {
		e.degradedKeys[k] = true
		if h != nil {
			h.SetDegraded(k, v)
		}
	}
}

// longPoll holds a ?wait= request on the upstream's SETS and kicks the tracker
// whenever the upstream answers with a new one.
func (e *Edge) longPoll(ctx context.Context) {
	backoff := time.Second
	etag := strings.Trim(e.snap.Load().etag, `"`)
	for ctx.Err() == nil {
		resp, err := e.lp.do(ctx, request{
			url: func(b *url.URL) string {
				u := route.SetsURL(b, false)
				if etag != "" {
					u += "?wait=" + url.QueryEscape(etag)
				}
				return u
			},
			ok: func(s int) bool { return s == http.StatusOK || s == http.StatusNotModified },
		})
		wait := time.Duration(0)
		if err != nil {
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, setid.MaxSetsBytes)) // the tracker re-reads with the signature
			resp.Body.Close()
			backoff = time.Second
			got := strings.Trim(resp.Header.Get("ETag"), `"`)
			switch {
			case resp.StatusCode == http.StatusOK && got != etag:
				etag = got
				e.Kick()
			case resp.StatusCode == http.StatusOK:
				// Answered at once without a change: the upstream does not
				// hold long polls. Fall back to a slow loop.
				wait = e.cfg.Poll
			default:
				// 304: unchanged. A master over its waiter limit or shutting
				// down says when to come back.
				if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
					wait = time.Duration(min(s, 300)) * time.Second
				}
			}
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

// Degraded returns why the edge is degraded (a live manifest expired), or
// nil. It is what /healthz reports.
func (e *Edge) Degraded() []error {
	var out []error
	now := e.now()
	for name, st := range e.snap.Load().sets {
		if err := st.expired(name, now); err != nil {
			out = append(out, err)
		}
	}
	return out
}

// expired returns, if the live manifest of set name has expired at now,
// an error saying since when; else nil.
func (st *setState) expired(name string, now time.Time) error {
	if !st.live.Expired(now) {
		return nil
	}
	return fmt.Errorf("set %s: live manifest %s expired at %s", name, st.live.ID, st.live.Expires.Format(time.RFC3339))
}

// Health returns nil if the edge is fully healthy, or an error saying why
// it is degraded (it still serves).
func (e *Edge) Health() error { return errors.Join(e.Degraded()...) }

// errMethod is a 405.
var errMethod = errors.New("method not allowed")

// ServeHTTP serves the master's URL space from the cache.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpserve.DropUnservableRange(r)
	// An encoded "/", "\\" or NUL would name another file upstream than the
	// path we validate and key by; "." segments name nothing.
	p, err := route.CleanURL(r.URL)
	if err == nil {
		if p != r.URL.Path {
			r.URL.Path, r.URL.RawPath = p, ""
		}
		if e.manifestMode() {
			err = e.serveManifestMode(w, r)
		} else {
			err = e.servePlain(w, r)
		}
	}
	if err != nil {
		e.writeError(w, r, err)
	}
}

// writeError maps an error to its status and logs it: the one place that
// decides 404 ("not in this set") against 502/504 ("cannot reach upstream").
func (e *Edge) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusBadGateway
	var se *StatusError
	switch {
	case errors.Is(err, route.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errMethod):
		status = http.StatusMethodNotAllowed
		w.Header().Set("Allow", "GET, HEAD")
	case errors.Is(err, errBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, errNoSets), errors.Is(err, errNoManifest):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	case timeoutError(err), errors.Is(err, cache.ErrStalled):
		status = http.StatusGatewayTimeout
	case errors.Is(err, ErrUpstreamDown):
		status = http.StatusBadGateway
	case errors.As(err, &se) && se.Status >= 400 && se.Status < 500:
		status = se.Status
	}
	lvl := slog.LevelDebug
	if status >= 500 {
		lvl = slog.LevelWarn
	}
	e.log.Log(r.Context(), lvl, "request failed", "path", r.URL.Path, "status", status, "err", err)
	h := w.Header()
	h.Del("Content-Length")
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, http.StatusText(status))
}

var (
	errBadRequest = errors.New("bad request")
	errNoSets     = errors.New("no verified SETS yet")
	errNoManifest = errors.New("no verified manifest yet")
)

// notice is the body of a push notice.
type notice struct {
	Set string `json:"set"`
	ID  string `json:"id"`
}

// serveNotify takes a push notice: only a hint to re-read SETS now. It is
// checked for shape and replay (an ID not newer than the one held is
// ignored), but never trusted: the re-read verifies SETS itself.
func (e *Edge) serveNotify(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return errMethod
	}
	var n notice
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxNotifyBytes))
	if err := dec.Decode(&n); err != nil {
		return fmt.Errorf("%w: notice: %v", errBadRequest, err)
	}
	if e.manifestMode() {
		if setid.ValidateName(n.Set) != nil {
			return fmt.Errorf("%w: notice: bad set name", errBadRequest)
		}
		id, err := setid.Parse(n.ID)
		if err != nil {
			return fmt.Errorf("%w: notice: bad set ID", errBadRequest)
		}
		if st, ok := e.snap.Load().sets[n.Set]; ok && !id.After(st.live.ID) {
			e.met.notices.WithLabelValues("stale").Inc()
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
	}
	e.met.notices.WithLabelValues("accepted").Inc()
	e.Kick()
	w.WriteHeader(http.StatusAccepted)
	return nil
}
