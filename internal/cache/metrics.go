package cache

import "github.com/prometheus/client_golang/prometheus"

// Prometheus metrics: Cache is a prometheus.Collector, so the edge registers
// it as is (registry.MustRegister(c)). Names and meanings follow Stats.
var (
	descHits           = prometheus.NewDesc("pkgcdn_cache_hits_total", "Requests answered by a complete cache entry.", nil, nil)
	descMisses         = prometheus.NewDesc("pkgcdn_cache_misses_total", "Requests that started an upstream fetch.", nil, nil)
	descCollapsed      = prometheus.NewDesc("pkgcdn_cache_collapsed_total", "Requests that joined a fetch already in flight.", nil, nil)
	descBytes          = prometheus.NewDesc("pkgcdn_cache_bytes_total", "Bytes read from complete entries (source=cache, not counting Object.File) and received from upstreams (source=upstream).", []string{"source"}, nil)
	descInFlight       = prometheus.NewDesc("pkgcdn_cache_fills_in_flight", "Upstream fetches in progress.", nil, nil)
	descFillErrors     = prometheus.NewDesc("pkgcdn_cache_fill_errors_total", "Fetches that failed (upstream error, stall, verification).", nil, nil)
	descVerifyFailures = prometheus.NewDesc("pkgcdn_cache_verify_failures_total", "Fetches whose size or sha256 did not match.", nil, nil)
	descPassThrough    = prometheus.NewDesc("pkgcdn_cache_pass_through_total", "Fetches streamed without being kept (no-store, too big, disk error).", nil, nil)
	descDiskErrors     = prometheus.NewDesc("pkgcdn_cache_disk_errors_total", "Fetches degraded to pass-through by a disk error such as ENOSPC.", nil, nil)
	descEvictions      = prometheus.NewDesc("pkgcdn_cache_evictions_total", "Entries evicted to stay under the size bound.", nil, nil)
	descEntries        = prometheus.NewDesc("pkgcdn_cache_entries", "Complete entries.", nil, nil)
	descBytesUsed      = prometheus.NewDesc("pkgcdn_cache_bytes_used", "Bytes of complete entries plus reservations of fetches in flight.", nil, nil)
	descMaxBytes       = prometheus.NewDesc("pkgcdn_cache_max_bytes", "The size bound.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Cache) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descCollapsed, descBytes, descInFlight,
		descFillErrors, descVerifyFailures, descPassThrough, descDiskErrors, descEvictions,
		descEntries, descBytesUsed, descMaxBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Cache) Collect(ch chan<- prometheus.Metric) {
	s := c.Stats()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter(descHits, s.Hits)
	counter(descMisses, s.Misses)
	counter(descCollapsed, s.Collapsed)
	counter(descBytes, s.BytesFromCache, "cache")
	counter(descBytes, s.BytesFromUpstream, "upstream")
	gauge(descInFlight, s.FillsInFlight)
	counter(descFillErrors, s.FillErrors)
	counter(descVerifyFailures, s.VerifyFailures)
	counter(descPassThrough, s.PassThrough)
	counter(descDiskErrors, s.DiskErrors)
	counter(descEvictions, s.Evictions)
	gauge(descEntries, s.Entries)
	gauge(descBytesUsed, s.BytesUsed)
	gauge(descMaxBytes, s.MaxBytes)
}
