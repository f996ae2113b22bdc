package origin

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type pollResult struct {
	status int
	etag   string
	retry  string
	body   string
	err    error
}

// poll starts GET /.pkgcdn/sets?wait=etag and returns its result channel.
func (f *fixture) poll(ctx context.Context, etag string) <-chan pollResult {
	ch := make(chan pollResult, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/.pkgcdn/sets?wait="+url.QueryEscape(etag), nil)
		if err != nil {
			ch <- pollResult{err: err}
			return
		}
		resp, err := f.ts.Client().Do(req)
		if err != nil {
			ch <- pollResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- pollResult{resp.StatusCode, resp.Header.Get("ETag"), resp.Header.Get("Retry-After"), string(b), err}
	}()
	return ch
}

// parkHook makes the server report every parked long-poll on the
// returned channel.
func parkHook(f *fixture) <-chan struct{} {
	parked := make(chan struct{}, 1000)
	f.srv.onWait = func() { parked <- struct{}{} }
	return parked
}

func (f *fixture) setsETag(t *testing.T) (string, string) {
	t.Helper()
	resp, body := f.get("/.pkgcdn/sets")
	if resp.StatusCode != 200 {
		t.Fatalf("GET sets: %s", resp.Status)
	}
	return resp.Header.Get("ETag"), string(body)
}

func TestLongPollAnswersAtOnceIfChanged(t *testing.T) {
	f := newFixture(t, nil)
	f.publish(set, map[string]string{"a": "a"})
	etag, body := f.setsETag(t)
	r := <-f.poll(t.Context(), `"0000"`)
	if r.status != 200 || r.etag != etag || r.body != body {
		t.Errorf("wait on another ETag: %d %s, want 200 %s with SETS", r.status, r.etag, etag)
	}
	if f.srv.Waiters() != 0 {
		t.Errorf("%d waiters", f.srv.Waiters())
	}
}

func TestLongPollWakesOnCommit(t *testing.T) {
	for _, quoted := range []bool{true, false} {
		name := "unquoted"
		if quoted {
			name = "quoted"
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, nil)
			parked := parkHook(f)
			f.publish(set, map[string]string{"a": "a"})
			etag, _ := f.setsETag(t)
			if !quoted {
				etag = strings.Trim(etag, `"`)
			}
			res := f.poll(t.Context(), etag)
			<-parked
			if _, err := f.publishRemote(set, map[string]string{"a": "b"}); err != nil {
				t.Fatal(err)
			}
			newETag, newBody := f.setsETag(t)
			r := <-res
			if r.err != nil || r.status != 200 || r.etag != newETag || r.body != newBody {
				t.Errorf("woken long-poll: %d %s %v, want 200 %s with the new SETS", r.status, r.etag, r.err, newETag)
			}
		})
	}
}

// TestLongPollWakesOnLocalPublish: a set published behind the server's
// back (local pkgpublish --root) is noticed by Run's SETS poll.
func TestLongPollWakesOnLocalPublish(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PollInterval = time.Millisecond })
	f.publish(set, map[string]string{"a": "a"})
	parked := parkHook(f)
	etag, _ := f.setsETag(t)
	res := f.poll(t.Context(), etag)
	<-parked
	f.publishLocal(set, map[string]string{"a": "b"}) // no Refresh: Run must notice
	r := <-res
	newETag, _ := f.setsETag(t)
	if r.status != 200 || r.etag != newETag || newETag == etag {
		t.Errorf("long-poll after a local publish: %d %s, want 200 %s", r.status, r.etag, newETag)
	}
}

func TestLongPollTimeoutIs304(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LongPollTimeout = time.Millisecond })
	f.publish(set, map[string]string{"a": "a"})
	etag, _ := f.setsETag(t)
	r := <-f.poll(t.Context(), etag)
	if r.status != 304 || r.etag != etag || r.retry != "" || r.body != "" {
		t.Errorf("timed-out long-poll: %d ETag %s Retry-After %q body %q, want 304 %s", r.status, r.etag, r.retry, r.body, etag)
	}
}

func TestLongPollMaxWaiters(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxWaiters = 1 })
	f.publish(set, map[string]string{"a": "a"})
	parked := parkHook(f)
	etag, _ := f.setsETag(t)
	first := f.poll(t.Context(), etag)
	<-parked
	r := <-f.poll(t.Context(), etag)
	if r.status != 304 || r.retry != "5" {
		t.Errorf("long-poll beyond MaxWaiters: %d Retry-After %q, want 304 at once with Retry-After 5", r.status, r.retry)
	}
	f.publish(set, map[string]string{"a": "b"})
	if r := <-first; r.status != 200 {
		t.Errorf("first waiter: %d, want 200", r.status)
	}
}

func TestLongPollManyWaitersOneBroadcast(t *testing.T) {
	f := newFixture(t, nil)
	f.publish(set, map[string]string{"a": "a"})
	parked := parkHook(f)
	etag, _ := f.setsETag(t)
	const n = 200
	results := make([]<-chan pollResult, n)
	for i := range results {
		results[i] = f.poll(t.Context(), etag)
	}
	for range n {
		<-parked
	}
	if got := f.metricValue("pkgcdn_origin_longpoll_waiters"); got != n || f.srv.Waiters() != n {
		t.Errorf("waiters gauge %v, Waiters() %d, want %d", got, f.srv.Waiters(), n)
	}
	f.publish(set, map[string]string{"a": "b"})
	newETag, _ := f.setsETag(t)
	for i, ch := range results {
		if r := <-ch; r.status != 200 || r.etag != newETag {
			t.Errorf("waiter %d: %d %s %v, want 200 %s", i, r.status, r.etag, r.err, newETag)
		}
	}
	if got := f.metricValue("pkgcdn_origin_longpoll_waiters"); got != 0 {
		t.Errorf("waiters gauge after the broadcast = %v, want 0", got)
	}
}

func TestLongPollReleasedOnShutdown(t *testing.T) {
	f := newFixture(t, nil)
	f.publish(set, map[string]string{"a": "a"})
	parked := parkHook(f)
	etag, _ := f.setsETag(t)
	res := f.poll(t.Context(), etag)
	<-parked
	f.srv.ReleaseWaiters()
	if r := <-res; r.status != 304 || r.retry != "5" {
		t.Errorf("released long-poll: %d Retry-After %q, want 304 with Retry-After 5", r.status, r.retry)
	}
	if r := <-f.poll(t.Context(), etag); r.status != 304 || r.retry != "5" {
		t.Errorf("long-poll during shutdown: %d, want 304 at once", r.status)
	}
}

func TestLongPollClientGone(t *testing.T) {
	f := newFixture(t, nil)
	f.publish(set, map[string]string{"a": "a"})
	parked := parkHook(f)
	etag, _ := f.setsETag(t)
	ctx, cancel := context.WithCancel(t.Context())
	res := f.poll(ctx, etag)
	<-parked
	cancel()
	if r := <-res; r.err == nil {
		t.Errorf("cancelled long-poll: %d, want a client error", r.status)
	}
	f.ts.Close() // waits for the handler to return
	if n := f.srv.Waiters(); n != 0 {
		t.Errorf("%d waiters after the client left, want 0", n)
	}
}

func TestLongPollWaitsForTheFirstPublish(t *testing.T) {
	f := newFixture(t, nil)
	parked := parkHook(f)
	res := f.poll(t.Context(), "")
	<-parked
	f.publish(set, map[string]string{"a": "a"})
	etag, body := f.setsETag(t)
	if r := <-res; r.status != 200 || r.etag != etag || r.body != body {
		t.Errorf("long-poll before the first publish: %d %s, want 200 %s", r.status, r.etag, etag)
	}
	g := newFixture(t, func(c *Config) { c.LongPollTimeout = time.Millisecond })
	if r := <-g.poll(t.Context(), ""); r.status != 404 {
		t.Errorf("timed-out long-poll with no SETS: %d, want 404", r.status)
	}
}
