package main

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"
	"golang.org/x/term"

	"github.com/pkgcdn/pkgcdn/internal/publish"
)

// isTerminal reports whether w is a terminal (progress bars are drawn only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress returns the progress callback of a publish: pb/v3 bars on a
// terminal, otherwise a log line every progressEvery.
//
// Sending overlaps hashing, but two bars cannot share the terminal's last
// line: the send bar appears when the hash bar is done, starting from the
// bytes sent so far.
func (e *env) progress() func(publish.Event) {
	if !e.tty {
		return e.progressLog()
	}
	var mu sync.Mutex // guards the fields below
	var cur *pb.ProgressBar
	var curStage publish.Stage
	waiting := map[publish.Stage]*pending{}
	start := func(stage publish.Stage, total, done int64) {
		tmpl := `{{string . "stage"}} {{counters . }} {{bar . }} {{percent . }} {{speed . }} {{rtime . "ETA %s"}}`
		if total <= 0 { // unknown while hashing goes on
			tmpl = `{{string . "stage"}} {{counters . }} {{speed . }}`
		}
		cur = pb.New64(total).Set(pb.Bytes, true).SetWriter(e.stderr).SetTemplateString(tmpl).
			Set("stage", string(stage)).SetCurrent(done).Start()
		curStage = stage
	}
	return func(ev publish.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Start && cur == nil:
			start(ev.Stage, ev.Total, 0)
		case ev.Start:
			waiting[ev.Stage] = &pending{total: ev.Total}
		case ev.End && cur != nil && curStage == ev.Stage:
			cur.Finish()
			cur = nil
			for stage, p := range waiting {
				delete(waiting, stage)
				if !p.ended {
					start(stage, p.total, p.done)
					break
				}
			}
		case ev.End:
			if p := waiting[ev.Stage]; p != nil {
				p.ended = true
			}
		case cur != nil && curStage == ev.Stage:
			cur.Add64(ev.N)
		default:
			if p := waiting[ev.Stage]; p != nil {
				p.done += ev.N
			}
		}
	}
}

// pending is a stage whose bar waits for the terminal line.
type pending struct {
	total, done int64
	ended       bool
}

// progressEvery is how often a publish without a terminal logs its progress.
const progressEvery = 10 * time.Second

// progressLog returns a progress callback that logs each stage's bytes so
// far at most every progressEvery (cron mails and journals get no bars).
func (e *env) progressLog() func(publish.Event) {
	var mu sync.Mutex // guards the maps
	done := map[publish.Stage]int64{}
	total := map[publish.Stage]int64{}
	last := map[publish.Stage]time.Time{}
	return func(ev publish.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Start:
			done[ev.Stage], total[ev.Stage], last[ev.Stage] = 0, ev.Total, time.Now()
		case ev.End:
			delete(done, ev.Stage)
		default:
			done[ev.Stage] += ev.N
			if time.Since(last[ev.Stage]) >= progressEvery {
				last[ev.Stage] = time.Now()
				e.log.Info("progress", "stage", string(ev.Stage), "bytes", done[ev.Stage], "total_bytes", total[ev.Stage])
			}
		}
	}
}
