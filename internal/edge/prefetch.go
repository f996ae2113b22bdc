package edge

import (
	"context"
	"io"
	"sync"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// prefetch fills the catalogue files of a freshly switched set in the
// background, so the first `pkg update` after a switch is a hit. It returns
// at once; Run waits for the work before it returns.
func (e *Edge) prefetch(ctx context.Context, m *manifest.Manifest) {
	if e.cfg.Prefetch < 0 {
		return
	}
	var todo []manifest.Entry
	for _, ent := range m.Entries {
		if isCatalogue(ent.Path) {
			todo = append(todo, ent)
		}
	}
	if len(todo) == 0 {
		return
	}
	e.bg.Go(func() {
		sem := make(chan struct{}, e.cfg.Prefetch)
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, ent := range todo {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Go(func() {
				defer func() { <-sem }()
				e.prefetchOne(ctx, m.Set, ent)
			})
		}
	})
}

func (e *Edge) prefetchOne(ctx context.Context, set string, ent manifest.Entry) {
	key := cache.Key(ent.SHA256)
	if obj, err := e.cfg.Cache.Get(key); err == nil {
		_ = obj.Close() // already there: nothing to release but the pin
		return
	}
	o := object{hash: ent.SHA256, size: ent.Size, modified: ent.Modified.Time(), ctype: route.ContentType(ent.Path), inSet: true}
	s, err := e.cfg.Cache.Fill(key, cache.FillSpec{Want: ent.SHA256, Size: ent.Size, Fetch: e.fetchObject(o), ContentAddressed: true})
	if err != nil {
		e.log.Debug("prefetch", "set", set, "path", ent.Path, "err", err)
		return
	}
	// Closing the stream ends a blocked read when Run stops; the fill
	// itself is the cache's and goes on or stops with it.
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	defer s.Close()
	if _, err := io.Copy(io.Discard, s.Reader(0)); err != nil && ctx.Err() == nil {
		e.log.Warn("prefetch failed", "set", set, "path", ent.Path, "sha256", ent.SHA256.String(), "err", err)
	}
}
