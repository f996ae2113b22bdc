package objcache

import "github.com/prometheus/client_golang/prometheus"

// Collectors returns the cache's metrics, named <namespace>_memory_cache_*:
// hits_total, loads_total (objects checked and put), bytes and objects.
func (c *Cache) Collectors(namespace string) []prometheus.Collector {
	stat := func(f func(Stats) float64) func() float64 { return func() float64 { return f(c.Stats()) } }
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "memory_cache_hits_total",
			Help: "Small files served from the memory cache."}, stat(func(s Stats) float64 { return float64(s.Hits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "memory_cache_loads_total",
			Help: "Small files checked against their sha256 and put into the memory cache (or served once, if too big or off)."}, stat(func(s Stats) float64 { return float64(s.Loads) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "memory_cache_bytes",
			Help: "Bytes of the small files held in the memory cache."}, stat(func(s Stats) float64 { return float64(s.Bytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "memory_cache_objects",
			Help: "Small files held in the memory cache."}, stat(func(s Stats) float64 { return float64(s.Objects) })),
	}
}
