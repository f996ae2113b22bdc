package main

import (
	"io"
	"os"
	"sync"

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
// terminal, nothing otherwise (the library logs each stage's end).
func (e *env) progress() func(publish.Event) {
	if !e.tty {
		return nil
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
