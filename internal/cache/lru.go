package cache

// The LRU list and the byte bound. Every function here runs with c.mu held.

// pushFrontLocked links slot i in as the most recently used.
func (c *Cache) pushFrontLocked(i int32) {
	e := &c.ents[i]
	e.prev, e.next = -1, c.head
	if c.head >= 0 {
		c.ents[c.head].prev = i
	}
	c.head = i
	if c.tail < 0 {
		c.tail = i
	}
}

// unlinkLocked takes slot i out of the list.
func (c *Cache) unlinkLocked(i int32) {
	e := &c.ents[i]
	if e.prev >= 0 {
		c.ents[e.prev].next = e.next
	} else {
		c.head = e.next
	}
	if e.next >= 0 {
		c.ents[e.next].prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

// touchLocked moves slot i to the front. The first touch after a snapshot is
// journaled, so the order survives a crash approximately (one record per
// entry per snapshot, not one per hit); the snapshot at Close keeps it exactly.
func (c *Cache) touchLocked(i int32) {
	if c.head != i {
		c.unlinkLocked(i)
		c.pushFrontLocked(i)
	}
	if e := &c.ents[i]; !e.touched {
		e.touched = true
		c.journalLocked(opTouch, e.key, e.size)
	}
}

// insertLocked adds (or replaces) a complete entry as the most recently used
// and returns its slot. It does not journal.
func (c *Cache) insertLocked(key Key, size int64) int32 {
	if i, ok := c.idx[key]; ok {
		e := &c.ents[i]
		c.used += size - e.size
		e.size = size
		if c.head != i {
			c.unlinkLocked(i)
			c.pushFrontLocked(i)
		}
		return i
	}
	var i int32
	if n := len(c.free); n > 0 {
		i = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		c.ents = append(c.ents, entry{})
		i = int32(len(c.ents) - 1)
	}
	c.ents[i] = entry{key: key, size: size, live: true}
	c.idx[key] = i
	c.used += size
	c.pushFrontLocked(i)
	return i
}

// dropLocked forgets slot i without touching the disk or the journal.
func (c *Cache) dropLocked(i int32) {
	e := &c.ents[i]
	c.unlinkLocked(i)
	delete(c.idx, e.key)
	c.used -= e.size
	*e = entry{prev: -1, next: -1}
	c.free = append(c.free, i)
}

// removeLocked deletes entry i: data first, then its Meta (the reverse of
// the commit order, so no data file is ever without its Meta), then the
// journal record. The unlinks happen under c.mu so that a new fill of the
// same key cannot rename its file into place between them.
func (c *Cache) removeLocked(i int32) {
	key, size := c.ents[i].key, c.ents[i].size
	c.forgetMetaLocked(key)
	c.dirtyDirs[key[0]] = true
	if c.ents[i].dirty == 0 {
		c.tombstoneLocked(key)
	}
	if err := removeIfExists(c.dataPath(key)); err != nil {
		c.log.Warn("cache remove", "sha256", key.String(), "err", err)
	}
	_ = c.fault("remove") // crash tests die here; there is nothing to fail
	if err := removeIfExists(c.metaPath(key)); err != nil {
		c.log.Warn("cache remove", "sha256", key.String(), "err", err)
	}
	c.dropLocked(i)
	c.journalLocked(opDel, key, size)
}

// evictLocked removes least recently used unpinned entries until the bytes
// of entries plus reservations fit MaxBytes (or only pinned entries are
// left: fills and served objects may overshoot the bound briefly).
func (c *Cache) evictLocked() {
	i := c.tail
	for c.used+c.reserved > c.cfg.MaxBytes && i >= 0 {
		prev := c.ents[i].prev
		if c.ents[i].pins == 0 {
			c.removeLocked(i)
			c.st.evictions.Add(1)
		}
		i = prev
	}
}
