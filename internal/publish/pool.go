package publish

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Default Config.Jobs: a local copy may wait for the disk (writeback,
// the journal), so several in flight keep the CPUs busy; remote uploads
// share one network path.
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

// sender is what copier and uploader share: the errgroup of their workers,
// and the tally and progress of the objects they send while hashing goes on.
type sender struct {
	cfg    *Config
	cancel context.CancelFunc // cancels the context newSender returned
	g      *errgroup.Group
	start  time.Time

	n, size  atomic.Int64
	started  atomic.Bool
	sent     int   // set by finish
	sentSize int64 // set by finish
}

// newSender returns a sender and the context of its workers, done when one
// fails or cancel is called; hashing runs under it.
func newSender(ctx context.Context, cfg *Config) (*sender, context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(ctx)
	return &sender{cfg: cfg, cancel: cancel, g: g, start: time.Now()}, gctx
}

// begin starts the send stage at the first object sent. Its total is
// unknown while hashing goes on: 0 means "unknown".
func (s *sender) begin() {
	if !s.started.Swap(true) {
		s.cfg.event(Event{Stage: StageSend, Start: true})
	}
}

// done counts one object of size bytes sent.
func (s *sender) done(size int64) {
	s.n.Add(1)
	s.size.Add(size)
}

// finish waits for the workers, whose input the caller has closed, ends
// the send stage and sets sent and sentSize. A failure is wrapped as op;
// success is logged as msg.
func (s *sender) finish(op, msg string) error {
	err := s.g.Wait()
	s.cancel()
	if s.started.Load() {
		s.cfg.event(Event{Stage: StageSend, End: true})
	}
	s.sent, s.sentSize = int(s.n.Load()), s.size.Load()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	s.cfg.logger().Info(msg, "objects", s.sent, "bytes", s.sentSize, "dur", time.Since(s.start))
	return nil
}
