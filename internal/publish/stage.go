package publish

import (
	"sync"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/layout"
)

// stager builds the new set's directory in the root (a layout.Stage) while
// the source is still hashed and copied, so that the Commit's half a
// second of hardlinks (30,000 files) overlaps the hashing instead of
// following it. It starts at the first file that differs from the
// announced set: an unchanged republish links nothing. Its failures only
// cost speed: the Commit then links what the Stage lacks.
type stager struct {
	root *layout.Root
	set  string

	mu      sync.Mutex // guards the fields below
	wake    sync.Cond  // signalled when items grow or closed is set
	items   []stageItem
	active  bool // the linker runs
	closed  bool // no more items; the linker ends once items are linked
	dropped bool // the publish failed: drop the items left
	stage   *layout.Stage
	done    chan struct{} // closed when the linker ends
}

type stageItem struct {
	path string
	d    digest.SHA256
}

func newStager(root *layout.Root, set string) *stager {
	s := &stager{root: root, set: set, done: make(chan struct{})}
	s.wake.L = &s.mu
	return s
}

// add queues the file path with object d for the Stage; changed says it
// differs from the announced set, which starts the linker.
func (s *stager) add(path string, d digest.SHA256, changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.items = append(s.items, stageItem{path, d})
	if changed && !s.active {
		s.active = true
		go s.run()
	}
	s.wake.Signal()
}

// run links the queued items into a new Stage until finish.
func (s *stager) run() {
	defer close(s.done)
	st, err := s.root.NewStage(s.set)
	s.mu.Lock()
	if err != nil {
		s.mu.Unlock()
		return // no Stage: the Commit links everything
	}
	s.stage = st
	for {
		for len(s.items) == 0 && !s.closed {
			s.wake.Wait()
		}
		if s.dropped || (len(s.items) == 0 && s.closed) {
			s.mu.Unlock()
			return
		}
		batch := s.items
		s.items = nil
		s.mu.Unlock()
		for _, it := range batch {
			// An error stays in the Stage, which the Commit then ignores.
			if st.Link(it.path, it.d) != nil {
				s.mu.Lock()
				s.dropped = true
				s.mu.Unlock()
				break
			}
		}
		s.mu.Lock()
	}
}

// finish ends the queue, waits for the linker and returns the Stage (nil
// if none was started). With abort, the items not linked yet are dropped.
// The caller discards the Stage unless a Commit takes it over.
func (s *stager) finish(abort bool) *layout.Stage {
	s.mu.Lock()
	s.closed = true
	s.dropped = s.dropped || abort
	active := s.active
	s.wake.Broadcast()
	s.mu.Unlock()
	if !active {
		return nil
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stage
}
