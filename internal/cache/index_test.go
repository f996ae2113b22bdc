package cache

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReplay feeds arbitrary bytes to the index replay: it must never
// panic, and what it rebuilds must be a consistent LRU list.
func FuzzReplay(f *testing.F) {
	var rec [recSize]byte
	var seed []byte
	for _, r := range []struct {
		op   byte
		key  []byte
		size int64
	}{{opHeader, []byte(magic), 0}, {opSnap, []byte{1}, 10}, {opSnap, []byte{2}, 20},
		{opAdd, []byte{3}, 30}, {opTouch, []byte{1}, 10}, {opDel, []byte{2}, 20}, {opClean, nil, 0}} {
		encodeRecord(&rec, r.op, r.key, r.size)
		seed = append(seed, rec[:]...)
	}
	f.Add(seed, false)
	f.Add(seed[:len(seed)-3], false)
	dup := append(append([]byte{}, seed[:2*recSize]...), seed[recSize:2*recSize]...)
	f.Add(dup, true)
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC { // explore the records, not the checksum
			for i := 0; i+recSize <= len(b); i += recSize {
				binary.BigEndian.PutUint32(b[i:], crc32.Checksum(b[i+4:i+recSize], crcTable))
			}
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "index"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		c := &Cache{cfg: Config{Dir: dir}, head: -1, tail: -1}
		clean, valid, _, err := c.replay()
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		if valid > int64(len(b)) || valid < -1 || valid%recSize != 0 && valid != -1 || clean && valid <= 0 {
			t.Fatalf("replay: clean %v valid %d of %d bytes", clean, valid, len(b))
		}
		n, used := 0, int64(0)
		for i := c.head; i >= 0; i = c.ents[i].next {
			if n++; n > len(c.idx) {
				t.Fatalf("LRU list longer than the index (%d)", len(c.idx))
			}
			if j, ok := c.idx[c.ents[i].key]; !ok || j != i {
				t.Fatalf("list entry %d not indexed", i)
			}
			if c.ents[i].size < 0 {
				t.Fatalf("entry of %d bytes", c.ents[i].size)
			}
			used += c.ents[i].size
		}
		if n != len(c.idx) || used != c.used {
			t.Fatalf("list %d entries %d bytes, index %d entries %d bytes", n, used, len(c.idx), c.used)
		}
	})
}
