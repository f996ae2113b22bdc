package publish

import (
	"context"
	"io"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// Default Config.Jobs: each local copy ends in an fsync, so a few in flight
// keep the disk busy; remote uploads share one network path.
const (
	localJobs  = 16
	remoteJobs = 4
)

// jobs returns Config.Jobs, or def if it is zero or negative.
func (c *Config) jobs(def int) int {
	if c.Jobs <= 0 {
		return def
	}
	return c.Jobs
}

// sendProgress returns the progress func of one object's bytes sent, or
// nil without Config.Progress (so senders skip the per-read call).
func (c *Config) sendProgress() func(int64) {
	if c.Progress == nil {
		return nil
	}
	return func(n int64) { c.event(Event{Stage: StageSend, N: n}) }
}

// opener returns the func that opens source files to send.
func (c *Config) opener() func(string) (io.ReadCloser, error) {
	if c.open == nil {
		return osOpen
	}
	return c.open
}

// forEach calls fn on each of items, at most jobs at once, and returns the
// first error; after it, no further item is started.
func forEach[T any](ctx context.Context, jobs int, items []T, fn func(context.Context, T) error) error {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(jobs, len(items)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(items) {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				if err := fn(gctx, items[i]); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// consume calls fn on each value received from ch until ch is closed; it
// runs as one of g's goroutines, and ctx is g's context. On the first error
// (fn's, or ctx's once another goroutine of g failed) it returns the error,
// leaving to g a goroutine that drains ch, so that senders never block on
// a dead consumer.
func consume[T any](ctx context.Context, g *errgroup.Group, ch <-chan T, fn func(T) error) error {
	for v := range ch {
		err := ctx.Err()
		if err == nil {
			err = fn(v)
		}
		if err != nil {
			g.Go(func() error {
				for range ch {
				}
				return nil
			})
			return err
		}
	}
	return nil
}
