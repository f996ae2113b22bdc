package cache

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
)

// The index is a journal of fixed 64-byte records:
//
//	[0:4]   CRC-32C of [4:64]
//	[4]     op
//	[5:8]   zero
//	[8:40]  key (header: magic, zero padded)
//	[40:48] size, big-endian
//	[48:64] zero
//
// It starts with a header record, then one snap record per entry from least
// to most recently used (a snapshot; its keys are unique), then appended add/del/touch records, and ends
// with a clean record when the cache was closed. Replaying it rebuilds the
// entries and their LRU order. A torn or corrupt record ends the replay and
// counts as a crash. Records are appended without fsync: a lost record is
// repaired by the reconcile after the crash that lost it, because New makes
// the "open" record (the end of the clean mark) durable before any fill.
const (
	recSize  = 64
	opHeader = 1
	opAdd    = 2
	opDel    = 3
	opTouch  = 4
	opOpen   = 5
	opClean  = 6
	opSnap   = 7 // an entry of the snapshot: keys are unique, so replay inserts blindly
	magic    = "pkgcdn-cache-index-v1"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func encodeRecord(b *[recSize]byte, op byte, key []byte, size int64) {
	*b = [recSize]byte{}
	b[4] = op
	copy(b[8:40], key)
	binary.BigEndian.PutUint64(b[40:48], uint64(size))
	binary.BigEndian.PutUint32(b[0:4], crc32.Checksum(b[4:], crcTable))
}

// journal appends records to the index file.
type journal struct {
	f       *os.File
	records int64 // records in the file
	buf     [recSize]byte
	failed  bool // an append failed: the file no longer matches memory
}

func (c *Cache) indexPath() string { return filepath.Join(c.cfg.Dir, "index") }

// journalLocked appends a record. A failure is logged, not returned: the
// journal is a hint that a reconcile can redo, never the source of truth for
// bytes, and an append failure leaves no clean mark.
func (c *Cache) journalLocked(op byte, key Key, size int64) {
	j := c.jr
	if j == nil || j.f == nil || j.failed {
		return // closed, or already out of step: the next New reconciles
	}
	encodeRecord(&j.buf, op, key[:], size)
	if _, err := j.f.Write(j.buf[:]); err != nil {
		j.failed = true
		c.log.Warn("cache index append", "err", err)
		return
	}
	j.records++
	if op != opTouch && j.records > 2*int64(len(c.idx))+1<<16 {
		if err := c.compactLocked(false); err != nil {
			c.log.Warn("cache index compact", "err", err)
		}
	}
}

func (j *journal) close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// compactLocked rewrites the index atomically as a snapshot of the entries
// in LRU order (oldest first), followed by a clean record if clean, and
// reopens it for appending.
func (c *Cache) compactLocked(clean bool) (err error) {
	if err := c.jr.close(); err != nil {
		c.log.Warn("cache index close", "err", err)
	}
	c.jr = &journal{failed: true} // until the new one is open
	af, err := atomicfile.Create(c.indexPath(), 0o644)
	if err != nil {
		return err
	}
	defer af.Abort()
	w := bufio.NewWriterSize(af, 1<<20)
	var b [recSize]byte
	var n int64
	put := func(op byte, key []byte, size int64) {
		encodeRecord(&b, op, key, size)
		_, _ = w.Write(b[:]) // a bufio error sticks; Flush reports it
		n++
	}
	put(opHeader, []byte(magic), 0)
	for i := c.tail; i >= 0; i = c.ents[i].prev {
		c.ents[i].touched = false
		put(opSnap, c.ents[i].key[:], c.ents[i].size)
	}
	if clean {
		put(opClean, nil, 0)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := af.Commit(); err != nil {
		return err
	}
	f, err := os.OpenFile(c.indexPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	c.jr = &journal{f: f, records: n}
	return nil
}

// open loads the index and, unless the last run closed cleanly, reconciles
// it with the directory. It reports whether a reconcile was needed.
func (c *Cache) open() (dirty bool, err error) {
	removeIndexTemps(c.cfg.Dir)
	clean, valid, err := c.replay()
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !clean {
		// Appends continue after the last whole record (a torn one is cut
		// off); the reconcile that New starts rewrites the index when done.
		if valid < 0 {
			return true, c.compactLocked(false)
		}
		if err := os.Truncate(c.indexPath(), valid); err != nil {
			return true, err
		}
		f, err := os.OpenFile(c.indexPath(), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return true, err
		}
		c.jr = &journal{f: f, records: valid / recSize}
		return true, nil
	}
	f, err := os.OpenFile(c.indexPath(), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return false, err
	}
	c.jr = &journal{f: f}
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	c.jr.records = fi.Size() / recSize
	// From here on the index ends in "open", not "clean": a crash before
	// the next Close is detected, so appends need no fsync of their own.
	c.journalLocked(opOpen, Key{}, 0)
	if c.jr.failed {
		return false, errors.New("index append failed")
	}
	if err := f.Sync(); err != nil {
		return false, err
	}
	return false, nil
}

// resetLocked forgets every entry (before a reconcile rebuilds them).
func (c *Cache) resetLocked() {
	c.idx = make(map[Key]int32)
	c.ents, c.free = nil, nil
	c.head, c.tail, c.used = -1, -1, 0
}

// removeIndexTemps removes atomicfile temps of the index a crash left.
func removeIndexTemps(dir string) {
	names, err := readDirNames(dir)
	if err != nil {
		return // New's later steps report a directory that cannot be read
	}
	for _, n := range names {
		if atomicfile.IsTemp(n) && strings.HasPrefix(n[len(".tmp-"):], "index.") {
			_ = os.Remove(filepath.Join(dir, n)) // leftover; harmless if it stays
		}
	}
}

func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// replay rebuilds the entries from the index and reports whether it ended
// with a clean record, and the length of its whole valid records (-1: the
// index must be rewritten). A missing index is an empty, unclean cache (it
// may still hold files, e.g. if the index was deleted).
func (c *Cache) replay() (clean bool, valid int64, err error) {
	f, err := os.Open(c.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		c.idx = make(map[Key]int32)
		return false, -1, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	hint := 0
	if fi, err := f.Stat(); err == nil {
		hint = int(fi.Size() / recSize)
	}
	c.idx = make(map[Key]int32, hint)
	c.ents = make([]entry, 0, hint)
	r := bufio.NewReaderSize(f, 1<<20)
	var b [recSize]byte
	last := byte(0)
	valid = 0 // bytes of whole, valid records
	snap := 0 // snapshot records so far; -1 once past the snapshot
	dupes := func() bool { return snap >= 0 && len(c.idx) != snap }
loop:
	for first := true; ; first = false {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break // a torn last record is a crash; last is not opClean
			}
			return false, 0, fmt.Errorf("read index: %w", err)
		}
		if binary.BigEndian.Uint32(b[0:4]) != crc32.Checksum(b[4:], crcTable) {
			last = 0
			break
		}
		op := b[4]
		if first != (op == opHeader) {
			last = 0
			break
		}
		var key Key
		copy(key[:], b[8:40])
		size := int64(binary.BigEndian.Uint64(b[40:48]))
		if size < 0 {
			last = 0
			break
		}
		if op != opSnap && op != opHeader && snap >= 0 {
			if dupes() { // not written by us
				c.resetLocked()
				return false, -1, nil
			}
			snap = -1
		}
		switch op {
		case opSnap:
			if snap < 0 {
				last = 0 // a snapshot record after the snapshot
				break loop
			}
			// One map probe instead of insertLocked's two: replay is
			// most of New's time, and map probes are most of replay's.
			i := int32(len(c.ents))
			c.ents = append(c.ents, entry{key: key, size: size, live: true})
			c.idx[key] = i
			c.used += size
			c.pushFrontLocked(i)
			snap++
		case opHeader:
			if string(b[8:8+len(magic)]) != magic {
				c.resetLocked() // not ours: rebuild from the directory
				return false, -1, nil
			}
		case opAdd:
			c.insertLocked(key, size)
		case opDel:
			if i, ok := c.idx[key]; ok {
				c.dropLocked(i)
			}
		case opTouch:
			if i, ok := c.idx[key]; ok && c.head != i {
				c.unlinkLocked(i)
				c.pushFrontLocked(i)
			}
		}
		last = op
		valid += recSize
	}
	if dupes() {
		c.resetLocked()
		return false, -1, nil
	}
	if valid == 0 { // not even a header
		return false, -1, nil
	}
	return last == opClean, valid, nil
}
