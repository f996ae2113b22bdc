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
//	[5]     flags: 1 = content-addressed (add and snap records: no Meta sidecar)
//	[6:8]   zero
//	[8:40]  key (header: magic, zero padded)
//	[40:48] size, big-endian
//	[48:64] zero
//
// It starts with a header record, then one snap (durable) or snap-dirty
// record per entry from least to most recently used (a snapshot; its keys
// are unique), then appended add/del/touch/synced/open records, and ends
// with a clean record when the cache was closed. Replaying it rebuilds the
// entries, their LRU order and which of them are durable: an add is dirty
// until a synced record whose size field counts past its position (the
// records before it were made durable by a checkpoint). An open record
// carries, in its key field, the boot ID of the run that appended what
// follows (zero: unknown). A torn or corrupt record ends the replay and
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
	opSnapD  = 8 // a snapshot entry not durable yet
	opSynced = 9 // records before the one numbered by size are durable
	magic    = "pkgcdn-cache-index-v1"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// flagCA marks the record of a content-addressed entry.
const flagCA = 1

func encodeRecord(b *[recSize]byte, op byte, key []byte, size int64) {
	encodeRecordFlags(b, op, 0, key, size)
}

func encodeRecordFlags(b *[recSize]byte, op, flags byte, key []byte, size int64) {
	*b = [recSize]byte{}
	b[4] = op
	b[5] = flags
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
	c.journalFlagsLocked(op, 0, key, size)
}

// journalAddLocked appends the add record of entry i.
func (c *Cache) journalAddLocked(i int32) {
	e := &c.ents[i]
	c.journalFlagsLocked(opAdd, e.flags(), e.key, e.size)
}

func (c *Cache) journalFlagsLocked(op, flags byte, key Key, size int64) {
	j := c.jr
	if j == nil || j.f == nil || j.failed {
		return // closed, or already out of step: the next New reconciles
	}
	encodeRecordFlags(&j.buf, op, flags, key[:], size)
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
	put := func(op, flags byte, key []byte, size int64) {
		encodeRecordFlags(&b, op, flags, key, size)
		_, _ = w.Write(b[:]) // a bufio error sticks; Flush reports it
		n++
	}
	put(opHeader, 0, []byte(magic), 0)
	for i := c.tail; i >= 0; i = c.ents[i].prev {
		c.ents[i].touched = false
		op := byte(opSnap)
		if c.ents[i].dirty != 0 {
			op = opSnapD
		}
		put(op, c.ents[i].flags(), c.ents[i].key[:], c.ents[i].size)
	}
	if clean {
		put(opClean, 0, nil, 0)
	} else {
		put(opOpen, 0, c.boot[:], 0) // what follows is this boot's
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

// open loads the index and reports whether a reconcile is needed (the
// last run did not close cleanly). Dirty entries (not covered by a
// checkpoint) are removed if the last run was not in this boot (a power
// loss may have torn them), else left to the reconcile, which checks their
// bytes (see "Commit and durability" in disk.go).
func (c *Cache) open() (dirty bool, err error) {
	removeIndexTemps(c.cfg.Dir)
	clean, valid, last, err := c.replay()
	if err != nil {
		return false, err
	}
	now := c.currentBoot()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rebooted = !clean && (now.zero() || last != now)
	if !c.rebooted {
		c.boot = now
	}
	// Appends continue after the last whole record (a torn one is cut
	// off); the reconcile that New starts rewrites the index when done.
	if !clean && valid >= 0 {
		if err := os.Truncate(c.indexPath(), valid); err != nil {
			return true, err
		}
	}
	if valid < 0 {
		if err := c.compactLocked(false); err != nil {
			return true, err
		}
	} else {
		f, err := os.OpenFile(c.indexPath(), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return !clean, err
		}
		c.jr = &journal{f: f, records: valid / recSize}
	}
	for i := range c.ents {
		e := &c.ents[i]
		switch {
		case !e.live || e.dirty == 0:
		case c.rebooted:
			c.removeLocked(int32(i)) // journaled: the replay agrees
		default:
			// Not served until the reconcile checked its bytes (and
			// adopted it again): a write-back error the dead process
			// never saw may have torn it.
			c.dropLocked(int32(i))
		}
	}
	f := c.jr.f
	// The removals above, then: from here on the index ends in "open", not
	// "clean": a crash before the next Close is detected, so appends need
	// no fsync of their own. It names this boot only if the entries and
	// files are this boot's to trust (after a power loss, only once the
	// reconcile removed what the index does not name).
	c.journalLocked(opOpen, Key(c.boot.key()), 0)
	if c.jr.failed {
		return !clean, errors.New("index append failed")
	}
	if err := f.Sync(); err != nil {
		return !clean, err
	}
	return !clean, nil
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
func (c *Cache) replay() (clean bool, valid int64, boot bootID, err error) {
	f, err := os.Open(c.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		c.idx = make(map[Key]int32)
		return false, -1, boot, nil
	}
	if err != nil {
		return false, 0, boot, err
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
	valid = 0           // bytes of whole, valid records
	snap := 0           // snapshot records so far; -1 once past the snapshot
	var pend []dirtyRef // dirty entries in journal order, for opSynced
	dupes := func() bool { return snap >= 0 && len(c.idx) != snap }
loop:
	for first := true; ; first = false {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break // a torn last record is a crash; last is not opClean
			}
			return false, 0, boot, fmt.Errorf("read index: %w", err)
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
		pos := valid / recSize // this record's number; dirty marks are pos+1
		if op != opSnap && op != opSnapD && op != opHeader && snap >= 0 {
			if dupes() { // not written by us
				c.resetLocked()
				return false, -1, boot, nil
			}
			snap = -1
		}
		switch op {
		case opSnap, opSnapD:
			if snap < 0 {
				last = 0 // a snapshot record after the snapshot
				break loop
			}
			// One map probe instead of insertLocked's two: replay is
			// most of New's time, and map probes are most of replay's.
			i := int32(len(c.ents))
			c.ents = append(c.ents, entry{key: key, size: size, live: true, ca: b[5]&flagCA != 0})
			if op == opSnapD {
				c.ents[i].dirty = uint64(pos + 1)
				pend = append(pend, dirtyRef{slot: i, seq: uint64(pos + 1)})
			}
			c.idx[key] = i
			c.used += size
			c.pushFrontLocked(i)
			snap++
		case opHeader:
			if string(b[8:8+len(magic)]) != magic {
				c.resetLocked() // not ours: rebuild from the directory
				return false, -1, boot, nil
			}
		case opAdd:
			i := c.insertLocked(key, size)
			c.ents[i].ca = b[5]&flagCA != 0
			c.ents[i].dirty = uint64(pos + 1)
			pend = append(pend, dirtyRef{slot: i, seq: uint64(pos + 1)})
		case opSynced:
			// Marks are in increasing order: the covered ones lead pend.
			n := 0
			for ; n < len(pend) && pend[n].seq <= uint64(size); n++ {
				if e := &c.ents[pend[n].slot]; e.dirty == pend[n].seq {
					e.dirty = 0
				}
			}
			pend = pend[n:]
		case opOpen:
			copy(boot[:], b[8:8+len(boot)])
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
		return false, -1, boot, nil
	}
	if valid == 0 { // not even a header
		return false, -1, boot, nil
	}
	return last == opClean, valid, boot, nil
}
