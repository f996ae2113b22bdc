// Package origin is the master's http.Handler: it serves the live sets of a
// repository root (package layout), the signed set-ID file with long-poll,
// the signed manifests and the objects by hash, and the authenticated
// publish API that pkgpublish uploads to (PUBLISH_API.md beside this file).
// After a commit it wakes the long-pollers and pushes a notice to each
// configured mirror.
//
// URL space (DESIGN.md, "URL space"; parsed by package route):
//
//	/<set>/<path>                     the file of the live set; Cache-Control "public, no-cache"
//	/.pkgcdn/sets[.minisig]           SETS; "public, max-age=5"; ?wait=<etag> long-polls
//	/.pkgcdn/manifest/<set>/<id>[.minisig]   immutable
//	/.pkgcdn/objects/sha256/<hash>    immutable
//	/.pkgcdn/publish/…                upload API (only with a publish token)
//	/ (and /<set>/)                   mirror list for pkg's mirror_type: http (if configured)
//
// Serving is driven by the manifests, never by the request path: a set file
// is served only if the live manifest (or, for grace, a retained older one)
// lists it, so directories, staging/, .lock, SETS under another name, or
// anything else on disk that no manifest names is a 404.
//
// Long-poll (for the edge): GET /.pkgcdn/sets?wait=<etag> (the ETag value,
// quotes optional) answers at once with the current SETS (200) if its ETag
// differs from <etag>. Otherwise it holds the request until SETS changes
// (200 with the new SETS) or until Config.LongPollTimeout passes, and then
// answers 304 Not Modified with the unchanged ETag: the poller simply asks
// again. Beyond Config.MaxWaiters concurrent waiters, and during shutdown,
// the 304 comes at once with "Retry-After: 5": the poller should wait that
// long before it asks again. Before the first publish (no SETS yet) a
// long-poll with any <etag> waits for SETS to appear, and is a 404 if the
// timeout passes first.
//
// Small set files (up to Config.SmallFileBytes) are read whole, checked
// against the manifest's sha256, kept in a memory cache bounded by
// Config.MemoryCacheBytes, and a plain GET or HEAD of one is answered in a
// single write (httpserve.WriteWhole) with the headers http.ServeContent
// would send; Range and conditional requests go through ServeContent.
// Bigger files go by sendfile, size-checked. `current` is read on every
// request (live_unix.go), so a local publish is served at once.
//
// Every set-file response carries X-Pkgcdn-Set (the set) and
// X-Pkgcdn-Set-Id (the ID of the set whose file was served). A file served
// by grace from an older retained set also carries X-Pkgcdn-Grace: <live ID>.
package origin

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/objcache"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
)

// Defaults for the zero values of Config.
const (
	DefaultGraceSets       = 3
	DefaultLongPollTimeout = 60 * time.Second
	DefaultMaxWaiters      = 10000
	DefaultPollInterval    = time.Second
	DefaultMaxObjectSize   = 16 << 30
	DefaultLockTimeout     = 30 * time.Second
	DefaultUploadStall     = 60 * time.Second
	DefaultNotifyTimeout   = 10 * time.Second
	DefaultNotifyAttempts  = 3
	DefaultNotifyBackoff   = time.Second
	DefaultManifestCache   = 64
	DefaultSmallFileBytes  = 64 << 10
	DefaultMemoryCache     = objcache.DefaultMaxBytes
)

// Health receives the degraded conditions the origin finds (an expired
// live manifest, an unreadable SETS). *httpserve.Health implements it.
type Health interface {
	SetDegraded(key, reason string)
	ClearDegraded(key string)
}

// Config configures a Server.
type Config struct {
	// Root is the repository root served. Required.
	Root *layout.Root
	// Verifier holds the trusted keys a published manifest and SETS must be
	// signed with (--trusted-key). Required when PublishToken is set. If
	// set, a SETS on disk whose signature does not verify (a publisher
	// killed between the two files) is not served: the last good pair is,
	// flagged degraded. If nil, SETS is served as it is on disk.
	Verifier *sign.Verifier
	// PublishToken is the bearer token of the publish API. If empty, the
	// publish API is disabled and every /.pkgcdn/publish/ path is a 404.
	PublishToken string

	// NoGrace turns grace serving off: by default a path absent from the
	// live set is served from the newest of the GraceSets retained older
	// sets that has it.
	NoGrace bool
	// GraceSets is how many retained sets older than the live one grace
	// looks into. If zero, 3.
	GraceSets int
	// ManifestCache is how many parsed manifests are kept (LRU). If zero, 64.
	ManifestCache int
	// SmallFileBytes is the size up to which a set file is served from
	// memory: read whole, checked against the manifest's sha256 (a damaged
	// or tampered object is a 500, never served), kept in the memory
	// cache, and answered in one write. Bigger files are sent by sendfile
	// with a size check. If zero, 64 KiB; if negative, every file goes
	// by sendfile.
	SmallFileBytes int64
	// MemoryCacheBytes is the memory small files are kept in (an arena
	// outside the Go heap, resident only once used; oldest out first: see
	// internal/objcache). If zero, 64 MiB; if negative, small files are
	// read and checked on every request.
	MemoryCacheBytes int64

	// LongPollTimeout is how long GET /.pkgcdn/sets?wait= holds a request.
	// If zero, 60s.
	LongPollTimeout time.Duration
	// MaxWaiters caps concurrent long-poll waiters; beyond it a long-poll
	// is answered at once. If zero, 10000.
	MaxWaiters int
	// PollInterval is how often Run checks SETS for changes made by another
	// process (a local `pkgpublish --root`). If zero, 1s.
	PollInterval time.Duration

	// MaxObjectSize bounds one uploaded object in bytes. If zero, 16 GiB.
	MaxObjectSize int64
	// LockTimeout bounds the wait for the root's lock at commit. If zero, 30s.
	LockTimeout time.Duration
	// UploadStall is how long an upload may send nothing before it is cut
	// off. If zero, 60s.
	UploadStall time.Duration

	// Notify lists the URLs POSTed {"set","id"} after each commit. If
	// empty, no notices are sent.
	Notify []string
	// NotifyTimeout bounds one notify attempt. If zero, 10s.
	NotifyTimeout time.Duration
	// NotifyAttempts is how many times a notice is tried. If zero, 3.
	NotifyAttempts int
	// NotifyBackoff is the wait before the first retry, doubled for each
	// further one. If zero, 1s.
	NotifyBackoff time.Duration
	// HTTPClient sends the notices and the mirror probes. If nil, a client
	// of its own.
	HTTPClient *http.Client

	// Mirrors are served at "/" (and at each set's own URL) as
	// "URL: <mirror>" lines (pkg's mirror_type: http). If empty, "/" is a
	// 404.
	Mirrors []string
	// MirrorProbe, if not zero, is how often each mirror is probed (GET
	// <mirror>/.pkgcdn/sets, answered within MirrorProbe): "/" then lists
	// only the mirrors whose last probe got a 200, or all of them if none
	// did. If zero, every mirror is listed.
	MirrorProbe time.Duration

	// Registerer gets the origin's Prometheus metrics. If nil, they are
	// kept but not registered.
	Registerer prometheus.Registerer
	// Health receives degraded conditions. If nil, they are only logged.
	Health Health
	// Logger logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Now is the clock (manifest expiry, commit checks). If nil, time.Now.
	Now func() time.Time
}

// Server is the master's handler. It is safe for concurrent use. Run must
// be running for SETS changes by other processes to be noticed and for
// notices to be sent.
type Server struct {
	cfg      Config
	root     *layout.Root
	log      *slog.Logger
	met      *metrics
	tokenSum [sha256.Size]byte // sha256 of PublishToken: compared in constant time

	sets       atomic.Pointer[setsState]
	live       *liveDirs
	setsMu     sync.Mutex // serializes Refresh
	setsFailed bool       // the last Refresh failed; guarded by setsMu
	waiters    atomic.Int64

	stopOnce sync.Once
	stop     chan struct{} // closed when long-pollers must be released

	// running is true while Run runs: only then does a commit stage the
	// set's next publish (in the background, which Run's end waits for),
	// so that a Server used only as a Handler (tests, embedding) starts no
	// work after its last publish (a publisher's hint still stages, for
	// the commit that follows it).
	running atomic.Bool

	cache *manifestCache
	objs  *objcache.Cache // small files, verified
	ahead aheadStages     // sets staged ahead of their commits (publish.go)

	mirrors atomic.Pointer[mirrorList] // served at "/"; changed by probeMirrors

	notifyq chan notice

	onWait     func()                                 // test hook: a long-poll is parked
	onNotified func(result string)                    // test hook: a notice is done
	onProbed   func()                                 // test hook: a round of mirror probes is done
	onLive     func(set string, id setid.ID) setid.ID // test hook: replaces the live ID a request read
}

// New returns a Server for cfg. It reads SETS once; Run keeps it current.
func New(cfg Config) (*Server, error) {
	if cfg.Root == nil {
		return nil, errors.New("origin: no repository root")
	}
	if cfg.PublishToken != "" && cfg.Verifier == nil {
		return nil, errors.New("origin: the publish API needs at least one trusted key")
	}
	if cfg.GraceSets == 0 {
		cfg.GraceSets = DefaultGraceSets
	}
	if cfg.ManifestCache == 0 {
		cfg.ManifestCache = DefaultManifestCache
	}
	if cfg.SmallFileBytes == 0 {
		cfg.SmallFileBytes = DefaultSmallFileBytes
	}
	if cfg.LongPollTimeout == 0 {
		cfg.LongPollTimeout = DefaultLongPollTimeout
	}
	if cfg.MaxWaiters == 0 {
		cfg.MaxWaiters = DefaultMaxWaiters
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxObjectSize == 0 {
		cfg.MaxObjectSize = DefaultMaxObjectSize
	}
	if cfg.LockTimeout == 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.UploadStall == 0 {
		cfg.UploadStall = DefaultUploadStall
	}
	if cfg.NotifyTimeout == 0 {
		cfg.NotifyTimeout = DefaultNotifyTimeout
	}
	if cfg.NotifyAttempts == 0 {
		cfg.NotifyAttempts = DefaultNotifyAttempts
	}
	if cfg.NotifyBackoff == 0 {
		cfg.NotifyBackoff = DefaultNotifyBackoff
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	objs := objcache.New(objcache.Config{MaxBytes: cfg.MemoryCacheBytes, MaxObjectBytes: int(max(cfg.SmallFileBytes, 1))})
	met, err := newMetrics(cfg.Registerer, objs)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		root:     cfg.Root,
		log:      log,
		met:      met,
		tokenSum: sha256.Sum256([]byte(cfg.PublishToken)),
		stop:     make(chan struct{}),
		cache:    newManifestCache(cfg.ManifestCache),
		objs:     objs,
		live:     newLiveDirs(cfg.Root),
		notifyq:  make(chan notice, 256),
	}
	s.mirrors.Store(newMirrorList(cfg.Mirrors))
	s.sets.Store(&setsState{changed: make(chan struct{})})
	if err := s.refresh(true); err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	return s, nil
}

// Run keeps the server current until ctx is done: it polls SETS every
// PollInterval (so a local `pkgpublish --root` is noticed), checks the live
// manifests' expiry, and sends the notices queued by commits. When ctx is
// done it releases the long-pollers and waits for notices in flight (their
// requests are cancelled). It returns nil.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	defer s.ReleaseWaiters()
	defer func() {
		if err := s.discardAhead(); err != nil {
			s.log.Warn("discarding sets staged ahead of a commit", "err", err)
		}
	}()
	s.running.Store(true)
	defer s.running.Store(false)
	if s.cfg.MirrorProbe > 0 && len(s.cfg.Mirrors) > 0 {
		wg.Go(func() { s.probeMirrors(ctx) })
	}
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			_ = s.Refresh() // logged and reported to Health by Refresh
		case n := <-s.notifyq:
			wg.Go(func() { s.notify(ctx, n) })
		}
	}
}

// ReleaseWaiters answers every long-poll now and every later one at once
// (304 with Retry-After): call it when shutdown starts, so waiting
// mirrors do not hold the drain. Run calls it when it returns.
func (s *Server) ReleaseWaiters() {
	s.stopOnce.Do(func() { close(s.stop) })
}

// Waiters returns the number of long-polls waiting now.
func (s *Server) Waiters() int { return int(s.waiters.Load()) }
