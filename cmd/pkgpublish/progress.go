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
func (e *env) progress() func(publish.Event) {
	if !e.tty {
		return e.progressLog()
	}
	var mu sync.Mutex // guards bars
	bars := map[publish.Stage]*pb.ProgressBar{}
	return func(ev publish.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ev.Start:
			bar := pb.New64(ev.Total).Set(pb.Bytes, true).SetWriter(e.stderr).
				SetTemplateString(`{{string . "stage"}} {{counters . }} {{bar . }} {{percent . }} {{speed . }} {{rtime . "ETA %s"}}`).
				Set("stage", string(ev.Stage))
			bars[ev.Stage] = bar.Start()
		case ev.End:
			if bar := bars[ev.Stage]; bar != nil {
				bar.Finish()
				delete(bars, ev.Stage)
			}
		default:
			if bar := bars[ev.Stage]; bar != nil {
				bar.Add64(ev.N)
			}
		}
	}
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
