// Package logsetup makes the commands' structured logger from their
// --log-format and --log-level flags, so that pkgpublish and pkgserve
// accept the same values and log alike.
package logsetup

import (
	"fmt"
	"io"
	"log/slog"
)

// New returns a logger writing to w in format ("text" or "json") from
// level on ("debug", "info", "warn" or "error", any case). A bad value is
// an error naming its flag and the values it takes.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
