package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/publish"
)

func TestProgressBarsTakeTurns(t *testing.T) {
	var buf bytes.Buffer
	e := &env{stderr: &buf, tty: true, log: slog.New(slog.DiscardHandler)}
	p := e.progress()
	p(publish.Event{Stage: publish.StageHash, Start: true, Total: 100})
	p(publish.Event{Stage: publish.StageSend, Start: true}) // overlaps: waits for the line
	p(publish.Event{Stage: publish.StageSend, N: 30})
	p(publish.Event{Stage: publish.StageHash, N: 100})
	p(publish.Event{Stage: publish.StageHash, End: true})
	p(publish.Event{Stage: publish.StageSend, N: 12})
	p(publish.Event{Stage: publish.StageSend, End: true})
	out := buf.String()
	if !strings.Contains(out, "hash") || !strings.Contains(out, "send 42 B") {
		t.Errorf("bars:\n%q\nwant a hash bar, then a send bar at 42 B", out)
	}
}

func TestProgressLogWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	e := &env{stderr: &buf, log: slog.New(slog.NewTextHandler(&buf, nil))}
	p := e.progress()
	p(publish.Event{Stage: publish.StageHash, Start: true, Total: 10})
	p(publish.Event{Stage: publish.StageHash, N: 10})
	p(publish.Event{Stage: publish.StageHash, End: true})
	if strings.Contains(buf.String(), "[") {
		t.Errorf("a bar was drawn without a terminal:\n%s", buf.String())
	}
}
