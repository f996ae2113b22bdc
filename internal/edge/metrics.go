package edge

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/cache"
)

// metrics are the edge's Prometheus metrics. The cache's own counters are
// read from cache.Stats at scrape time by a collector.
type metrics struct {
	e               *Edge
	requests        *prometheus.CounterVec // by cache result
	hit, miss       prometheus.Counter     // requests' "hit" and "miss", looked up once
	bytesCache      prometheus.Counter
	bytesUpstream   prometheus.Counter
	upstreamFetches prometheus.Counter
	verifyFailures  *prometheus.CounterVec // SETS, manifest, rollback
	notices         *prometheus.CounterVec
	setID           *prometheus.GaugeVec
	setLag          *prometheus.GaugeVec
	responses       *prometheus.CounterVec // by status code
	degraded        prometheus.GaugeFunc
	generation      prometheus.GaugeFunc
}

func newMetrics(e *Edge) *metrics {
	m := &metrics{
		e: e,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkgcdn_edge_requests_total",
			Help: "File requests by cache result (hit, miss, revalidated, stale, pass).",
		}, []string{"result"}),
		bytesCache: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pkgcdn_edge_bytes_from_cache_total",
			Help: "Body bytes served from complete cache entries.",
		}),
		bytesUpstream: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pkgcdn_edge_bytes_from_upstream_total",
			Help: "Body bytes served to clients from fills in progress (each client counted).",
		}),
		upstreamFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pkgcdn_edge_upstream_fetches_total",
			Help: "Object fetches started towards the upstream.",
		}),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkgcdn_edge_verify_failures_total",
			Help: "SETS files, manifests and set IDs refused (bad signature, mismatch, expired, rollback).",
		}, []string{"what"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pkgcdn_edge_notices_total",
			Help: "Push notices received, by outcome.",
		}, []string{"outcome"}),
		setID: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pkgcdn_edge_set_id_seconds",
			Help: "The live set ID of each set, as Unix seconds.",
		}, []string{"set"}),
		setLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pkgcdn_edge_set_lag_seconds",
			Help: "How far the live set ID is behind the upstream's newest verified SETS entry.",
		}, []string{"set"}),
	}
	m.responses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pkgcdn_edge_http_responses_total",
		Help: "Responses by status code.",
	}, []string{"code"})
	m.degraded = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pkgcdn_edge_degraded",
		Help: "1 if a live manifest expired (still served), else 0.",
	}, func() float64 {
		if len(e.Degraded()) > 0 {
			return 1
		}
		return 0
	})
	m.generation = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pkgcdn_edge_plain_generation",
		Help: "Plain mode: the set-ID generation (bumped when the set-ID URL changes).",
	}, func() float64 { return float64(e.gen.Load()) })
	m.hit, m.miss = m.requests.WithLabelValues("hit"), m.requests.WithLabelValues("miss")
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	cs := []prometheus.Collector{cacheCollector{m.e.cfg.Cache}, m.requests, m.bytesCache, m.bytesUpstream, m.upstreamFetches,
		m.verifyFailures, m.notices, m.responses, m.setID, m.setLag, m.degraded, m.generation}
	if m.e.mem != nil {
		cs = append(cs, m.e.mem.Collectors("pkgcdn_edge")...)
	}
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observeSets updates the set ID and lag gauges from the current snapshot.
func (m *metrics) observeSets() {
	snap := m.e.snap.Load()
	for name, st := range snap.sets {
		m.setID.WithLabelValues(name).Set(float64(st.live.ID.Time().Unix()))
		lag := 0.0
		if ent, ok := snap.upstream.Lookup(name); ok && ent.ID.After(st.live.ID) {
			lag = ent.ID.Time().Sub(st.live.ID.Time()).Seconds()
		}
		m.setLag.WithLabelValues(name).Set(lag)
	}
}

// cacheCollector exports cache.Stats at scrape time.
type cacheCollector struct{ c *cache.Cache }

var cacheDescs = []struct {
	desc  *prometheus.Desc
	gauge bool
	get   func(cache.Stats) int64
}{
	{prometheus.NewDesc("pkgcdn_edge_cache_hits_total", "Cache lookups answered by a complete entry.", nil, nil), false, func(s cache.Stats) int64 { return s.Hits }},
	{prometheus.NewDesc("pkgcdn_edge_cache_misses_total", "Fills that started an upstream fetch.", nil, nil), false, func(s cache.Stats) int64 { return s.Misses }},
	{prometheus.NewDesc("pkgcdn_edge_cache_collapsed_total", "Requests that joined a fill already in flight.", nil, nil), false, func(s cache.Stats) int64 { return s.Collapsed }},
	{prometheus.NewDesc("pkgcdn_edge_cache_upstream_bytes_total", "Bytes received from upstreams by fills.", nil, nil), false, func(s cache.Stats) int64 { return s.BytesFromUpstream }},
	{prometheus.NewDesc("pkgcdn_edge_cache_fills_in_flight", "Fills in progress.", nil, nil), true, func(s cache.Stats) int64 { return s.FillsInFlight }},
	{prometheus.NewDesc("pkgcdn_edge_cache_fill_errors_total", "Fills that failed (upstream error, stall, verify).", nil, nil), false, func(s cache.Stats) int64 { return s.FillErrors }},
	{prometheus.NewDesc("pkgcdn_edge_cache_verify_failures_total", "Fills whose size or sha256 did not match.", nil, nil), false, func(s cache.Stats) int64 { return s.VerifyFailures }},
	{prometheus.NewDesc("pkgcdn_edge_cache_pass_through_total", "Fills streamed without keeping (no-store, too big, disk error).", nil, nil), false, func(s cache.Stats) int64 { return s.PassThrough }},
	{prometheus.NewDesc("pkgcdn_edge_cache_disk_errors_total", "Fills degraded to pass-through by a disk error.", nil, nil), false, func(s cache.Stats) int64 { return s.DiskErrors }},
	{prometheus.NewDesc("pkgcdn_edge_cache_evictions_total", "Entries evicted (LRU).", nil, nil), false, func(s cache.Stats) int64 { return s.Evictions }},
	{prometheus.NewDesc("pkgcdn_edge_cache_entries", "Complete entries.", nil, nil), true, func(s cache.Stats) int64 { return s.Entries }},
	{prometheus.NewDesc("pkgcdn_edge_cache_bytes", "Bytes of entries plus fills in flight.", nil, nil), true, func(s cache.Stats) int64 { return s.BytesUsed }},
	{prometheus.NewDesc("pkgcdn_edge_cache_max_bytes", "The cache's bound (--cache-size).", nil, nil), true, func(s cache.Stats) int64 { return s.MaxBytes }},
}

func (cc cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range cacheDescs {
		ch <- d.desc
	}
}

func (cc cacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.Stats()
	for _, d := range cacheDescs {
		t := prometheus.CounterValue
		if d.gauge {
			t = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(d.desc, t, float64(d.get(st)))
	}
}

// Observe counts one response; pass it as httpserve.Config.Observe.
func (e *Edge) Observe(r *http.Request, status int, bytes int64, h http.Header) {
	e.met.responses.WithLabelValues(strconv.Itoa(status)).Inc()
}
