package origin

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/route"
)

// mirrorList is the body served at "/" and its ETag.
type mirrorList struct {
	body []byte // one "URL: <mirror>" line each; nil: "/" is a 404
	etag string
}

// newMirrorList returns the list of mirrors, in the order given.
func newMirrorList(mirrors []string) *mirrorList {
	var b []byte
	for _, m := range mirrors {
		b = append(b, "URL: "+m+"\n"...)
	}
	return &mirrorList{body: b, etag: etagOf(b)}
}

// probeMirrors runs probeOnce every Config.MirrorProbe until ctx is done.
func (s *Server) probeMirrors(ctx context.Context) {
	t := time.NewTicker(s.cfg.MirrorProbe)
	defer t.Stop()
	for {
		s.probeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeOnce GETs each mirror's /.pkgcdn/sets (each within MirrorProbe) and
// serves at "/" only the mirrors that answered 200, in the configured
// order. If none did, all are listed: an empty list would leave pkg nothing
// to try, and the outage may be on the master's side of the network.
func (s *Server) probeOnce(ctx context.Context) {
	healthy := make([]bool, len(s.cfg.Mirrors))
	var wg sync.WaitGroup
	for i, m := range s.cfg.Mirrors {
		wg.Go(func() { healthy[i] = s.probeMirror(ctx, m, s.cfg.MirrorProbe) })
	}
	wg.Wait()
	var up []string
	for i, m := range s.cfg.Mirrors {
		if healthy[i] {
			up = append(up, m)
		}
	}
	if len(up) == 0 {
		up = s.cfg.Mirrors
	}
	if next := newMirrorList(up); next.etag != s.mirrors.Load().etag {
		s.mirrors.Store(next)
		s.log.Info("mirror list changed", "mirrors", len(up), "of", len(s.cfg.Mirrors))
	}
	if s.onProbed != nil {
		s.onProbed()
	}
}

// probeMirror reports whether a mirror answers its SETS with a 200 within
// timeout.
func (s *Server) probeMirror(ctx context.Context, mirror string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := strings.TrimRight(mirror, "/") + route.Prefix + "sets"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		s.log.Debug("mirror probe failed", "upstream", mirror, "err", err)
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection
	return resp.StatusCode == http.StatusOK
}
