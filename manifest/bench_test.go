package manifest

import "testing"

const benchEntries = 100_000

func BenchmarkManifestEncode(b *testing.B) {
	m := sample(benchEntries)
	b.SetBytes(int64(len(m.text())))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkManifestDecode(b *testing.B) {
	m := sample(benchEntries)
	data := mustEncode(b, m)
	b.SetBytes(int64(len(m.text())))
	b.ReportMetric(float64(len(data)), "compressed-bytes")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	m := sample(benchEntries)
	paths := make([]string, 0, 1024)
	for i := 0; i < len(m.Entries); i += len(m.Entries) / 1000 {
		paths = append(paths, m.Entries[i].Path)
	}
	paths = append(paths, "All/missing.pkg")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.Lookup(paths[i%len(paths)])
		i++
	}
}
