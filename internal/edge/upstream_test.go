package edge

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestPoolFailoverBudget(t *testing.T) {
	t.Parallel()
	down := newFakeMasterDown(t, http.StatusServiceUnavailable)
	ok := newFakeMasterDown(t, http.StatusOK)
	var bases []*url.URL
	for _, s := range []string{down.URL, ok.URL} {
		u, _ := url.Parse(s)
		bases = append(bases, u)
	}
	req := request{url: func(b *url.URL) string { return b.String() + "/x" }}
	for _, tt := range []struct {
		name   string
		budget time.Duration
		want   error
	}{
		{name: "no budget fails over", budget: 0},
		{name: "spent budget stops", budget: time.Nanosecond, want: context.DeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &pool{bases: bases, client: http.DefaultClient, budget: tt.budget, stickyFor: time.Minute, now: time.Now}
			resp, err := p.do(t.Context(), req)
			if resp != nil {
				resp.Body.Close()
			}
			if tt.want == nil && err != nil {
				t.Fatalf("do = %v, want the second upstream's answer", err)
			}
			if tt.want != nil && (!errors.Is(err, tt.want) || !errors.Is(err, ErrUpstreamDown)) {
				t.Fatalf("do = %v, want %v and ErrUpstreamDown", err, tt.want)
			}
		})
	}
}
