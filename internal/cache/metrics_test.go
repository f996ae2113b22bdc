package cache

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(1000, 30)
	fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b)))
	c.wg.Wait()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = v
		}
	}
	for name, want := range map[string]float64{
		"pkgcdn_cache_misses_total":         1,
		"pkgcdn_cache_entries":              1,
		"pkgcdn_cache_bytes_used":           1000,
		"pkgcdn_cache_bytes_total/upstream": 1000,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
	if len(got) != 14 {
		t.Errorf("gathered %d series, want 14", len(got))
	}
}
