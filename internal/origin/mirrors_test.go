package origin

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestMirrorProbeListsOnlyHealthyMirrors: with MirrorProbe, "/" lists only
// the mirrors that answered their SETS, in order, and all of them when none
// does (an empty list would leave pkg nothing to try).
func TestMirrorProbeListsOnlyHealthyMirrors(t *testing.T) {
	var upA, upB atomic.Bool
	mirror := func(up *atomic.Bool) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/.pkgcdn/sets" || !up.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("pkgcdn-sets v1\n"))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	a, b := mirror(&upA), mirror(&upB)
	probed := make(chan struct{})
	f := newFixture(t, func(c *Config) {
		c.Mirrors = []string{a, b}
		c.MirrorProbe = time.Hour // rounds are driven by the test below
	})
	f.stopRun()
	f.srv.onProbed = func() { probed <- struct{}{} }

	round := func(aUp, bUp bool, want string) {
		t.Helper()
		upA.Store(aUp)
		upB.Store(bUp)
		go f.srv.probeOnce(t.Context())
		<-probed
		if _, body := f.get("/"); string(body) != want {
			t.Errorf("mirrors up %v/%v: / = %q, want %q", aUp, bUp, body, want)
		}
	}
	round(true, true, "URL: "+a+"\nURL: "+b+"\n")
	round(false, true, "URL: "+b+"\n")
	round(true, false, "URL: "+a+"\n")
	round(false, false, "URL: "+a+"\nURL: "+b+"\n")
}
