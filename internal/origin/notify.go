package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// notice is one push to one mirror.
type notice struct {
	url  string
	body CommitResponse
}

// notify POSTs n to its mirror, retrying with exponential backoff, each
// attempt bounded by NotifyTimeout. A notice is only a hint (the mirror
// re-reads the signed SETS), so a failure is logged and counted, nothing
// more.
func (s *Server) notify(ctx context.Context, n notice) {
	body, err := json.Marshal(n.body)
	if err != nil {
		return // a struct of two strings always marshals
	}
	backoff := s.cfg.NotifyBackoff
	for attempt := 1; ; attempt++ {
		err = s.notifyOnce(ctx, n.url, body)
		if err == nil {
			s.met.notify.WithLabelValues("ok").Inc()
			s.log.Debug("mirror notified", "upstream", n.url, "set", n.body.Set, "set_id", n.body.ID)
			if s.onNotified != nil {
				s.onNotified("ok")
			}
			return
		}
		if attempt >= s.cfg.NotifyAttempts || ctx.Err() != nil {
			break
		}
		s.met.notify.WithLabelValues("retry").Inc()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff *= 2
	}
	s.met.notify.WithLabelValues("failed").Inc()
	s.log.Warn("mirror not notified", "upstream", n.url, "set", n.body.Set, "set_id", n.body.ID, "err", err)
	if s.onNotified != nil {
		s.onNotified("failed")
	}
}

func (s *Server) notifyOnce(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.NotifyTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // for keep-alive; errors don't matter
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify %s: %s", url, resp.Status)
	}
	return nil
}
