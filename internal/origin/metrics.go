package origin

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/objcache"
)

// metrics are the origin's Prometheus metrics.
type metrics struct {
	requests    *prometheus.CounterVec // code class, set
	bytes       *prometheus.CounterVec // code class, set
	waiters     prometheus.Gauge
	liveID      *prometheus.GaugeVec // set → unix time of the live ID
	liveAge     *prometheus.GaugeVec // set → seconds since the live ID, at the last check
	commits     prometheus.Counter
	refreshes   prometheus.Counter
	rejected    *prometheus.CounterVec // reason
	objects     prometheus.Counter
	objectBytes prometheus.Counter
	notify      *prometheus.CounterVec // result: ok, retry, failed, dropped

	// served caches the requests and bytes counters of each (code class,
	// set): WithLabelValues hashes its labels on every call. Bounded like
	// the labels: by the sets that exist.
	served sync.Map // servedKey → *servedCounters
}

type servedKey struct{ code, set string }

type servedCounters struct{ requests, bytes prometheus.Counter }

func newMetrics(reg prometheus.Registerer, objs *objcache.Cache) (*metrics, error) {
	const ns = "pkgcdn_origin"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Requests served, by status class and set."}, []string{"code", "set"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "response_bytes_total",
			Help: "Response body bytes sent, by status class and set."}, []string{"code", "set"}),
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "longpoll_waiters",
			Help: "Long-polls of /.pkgcdn/sets waiting now."}),
		liveID: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "live_set_id_timestamp_seconds",
			Help: "Unix time of each set's live set ID (its age is time() minus this)."}, []string{"set"}),
		liveAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "live_set_age_seconds",
			Help: "Age of each set's live set ID, updated every SETS poll (1s by default)."}, []string{"set"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_commits_total",
			Help: "Sets committed through the publish API."}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_refreshes_total",
			Help: "Live manifests re-signed with a new expiry through the publish API."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "publish_rejected_total",
			Help: "Publish API calls refused, by reason."}, []string{"reason"}),
		objects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_objects_total",
			Help: "Objects uploaded and stored."}),
		objectBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "publish_object_bytes_total",
			Help: "Bytes of objects uploaded and stored."}),
		notify: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "notify_total",
			Help: "Mirror notices, by result (ok, retry, failed, dropped)."}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	mem := objs.Collectors(ns)
	for _, c := range append([]prometheus.Collector{m.requests, m.bytes, m.waiters, m.liveID, m.liveAge, m.commits,
		m.refreshes, m.rejected, m.objects, m.objectBytes, m.notify}, mem...) {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var codeClasses = [6]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// Observe counts one served request; pass it as httpserve.Config.Observe.
// The set label comes from the X-Pkgcdn-Set response header, which the
// handler sets only for a published set, so the label's values are
// bounded by the sets that exist.
func (s *Server) Observe(r *http.Request, status int, bytes int64, h http.Header) {
	var code string
	if c := status / 100; c >= 1 && c <= 5 {
		code = codeClasses[c]
	} else {
		code = strconv.Itoa(status)
	}
	var set string
	if v := h[hdrSet]; len(v) > 0 {
		set = v[0]
	}
	k := servedKey{code, set}
	c, ok := s.met.served.Load(k)
	if !ok {
		c, _ = s.met.served.LoadOrStore(k, &servedCounters{
			requests: s.met.requests.WithLabelValues(code, set),
			bytes:    s.met.bytes.WithLabelValues(code, set),
		})
	}
	sc := c.(*servedCounters)
	sc.requests.Inc()
	if bytes > 0 {
		sc.bytes.Add(float64(bytes))
	}
}
