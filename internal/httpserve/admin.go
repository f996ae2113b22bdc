package httpserve

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is the state /healthz reports: ok, or degraded with the reasons
// the application set. Degraded means "still serving, an operator should
// look" (an expired live manifest, an unreachable upstream), so /healthz
// answers 200 either way and a load balancer keeps the server in rotation;
// the JSON body says which. A Health is safe for concurrent use; the zero
// value is ready and healthy.
type Health struct {
	mu      sync.Mutex        // guards reasons
	reasons map[string]string // key → human reason
}

// SetDegraded marks the condition key as degraded with a human reason,
// replacing any earlier reason for key.
func (h *Health) SetDegraded(key, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reasons == nil {
		h.reasons = make(map[string]string)
	}
	h.reasons[key] = reason
}

// ClearDegraded clears the condition key (no-op if not set).
func (h *Health) ClearDegraded(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.reasons, key)
}

// HealthStatus is the JSON body of /healthz.
type HealthStatus struct {
	Status   string   `json:"status"` // "ok" or "degraded"
	Degraded bool     `json:"degraded"`
	Reasons  []string `json:"reasons,omitempty"` // sorted by key
	Time     string   `json:"time"`              // RFC 3339, UTC
}

// Status returns the current state.
func (h *Health) Status(now time.Time) HealthStatus {
	h.mu.Lock()
	keys := make([]string, 0, len(h.reasons))
	for k := range h.reasons {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	st := HealthStatus{Status: "ok", Time: now.UTC().Format(time.RFC3339)}
	for _, k := range keys {
		st.Reasons = append(st.Reasons, h.reasons[k])
	}
	h.mu.Unlock()
	if len(st.Reasons) > 0 {
		st.Status, st.Degraded = "degraded", true
	}
	return st
}

// AdminHandler serves the admin listener: GET /healthz (HealthStatus as
// JSON; health may be nil: always ok), GET /metrics (the Prometheus text
// format of g; nil: prometheus.DefaultGatherer) and, if profile is set, Go's
// profiler under /debug/pprof/ (CPU and heap profiles for `go tool pprof`).
// Everything else is 404.
func AdminHandler(health *Health, g prometheus.Gatherer, profile bool) http.Handler {
	if health == nil {
		health = new(Health)
	}
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	metrics := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimRight(r.URL.Path, "/") {
		case "/healthz":
			if !AllowMethods(w, r, http.MethodGet, http.MethodHead) {
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			b, _ := json.Marshal(health.Status(time.Now())) // plain struct: cannot fail
			_, _ = w.Write(append(b, '\n'))                 // client gone: nothing to do
		case "/metrics":
			if !AllowMethods(w, r, http.MethodGet, http.MethodHead) {
				return
			}
			metrics.ServeHTTP(w, r)
		default:
			if profile && strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
				servePprof(w, r)
				return
			}
			http.NotFound(w, r)
		}
	})
}

// AllowMethods reports whether r's method is one of allowed. If not, it
// answers 405 Method Not Allowed with an Allow header listing them and
// returns false. (OPTIONS is not special: pkgcdn serves no CORS.)
func AllowMethods(w http.ResponseWriter, r *http.Request, allowed ...string) bool {
	if slices.Contains(allowed, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// Methods wraps h so that requests with any other method than allowed get
// a 405 with an Allow header.
func Methods(h http.Handler, allowed ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if AllowMethods(w, r, allowed...) {
			h.ServeHTTP(w, r)
		}
	})
}

// servePprof serves net/http/pprof's handlers without registering them on
// http.DefaultServeMux.
func servePprof(w http.ResponseWriter, r *http.Request) {
	switch name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/"); name {
	case "":
		pprof.Index(w, r)
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Handler(name).ServeHTTP(w, r)
	}
}
