package publish

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// getPublic GETs a small public file (SETS, a manifest, a signature) of at
// most limit bytes; an answer other than 200 is a *StatusError.
func getPublic(ctx context.Context, hc *http.Client, u string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{URL: u, Status: resp.Status, Code: resp.StatusCode}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("GET %s: over %d bytes", u, limit)
	}
	return b, err
}

// StatusError is a GET of a public file answered with another status than
// 200 OK.
type StatusError struct {
	URL    string
	Status string // "404 Not Found"
	Code   int
}

func (e *StatusError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }
