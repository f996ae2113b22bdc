package cache

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
)

const metaSuffix = ".meta"

// fanout is the name of the directory holding keys that start with byte b.
func fanout(b byte) string { return hex.EncodeToString([]byte{b}) }

// dataPath is objects/ab/<hex key>.
func (c *Cache) dataPath(k Key) string {
	return filepath.Join(c.objDir, fanout(k[0]), k.String())
}

// metaPath is objects/ab/<hex key>.meta.
func (c *Cache) metaPath(k Key) string { return c.dataPath(k) + metaSuffix }

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// readMeta reads a Meta sidecar.
func readMeta(path string) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, &corruptError{fmt.Sprintf("meta %s: %v", filepath.Base(path), err)}
	}
	return m, nil
}

// writeMeta atomically replaces key's Meta sidecar: temp file in tmp/,
// fsync, rename, fsync of the fan-out directory. (Not atomicfile.Create:
// that puts its temp file beside the target, and a crash's leftovers would
// then be scattered over 256 directories, which New would have to list.)
func (c *Cache) writeMeta(k Key, m Meta) (err error) {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.tmpDir, k.String()+metaSuffix+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()           // already failing
			_ = os.Remove(f.Name()) // best effort; New empties tmp/ anyway
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := c.fault("meta"); err != nil {
		return err
	}
	dst := c.metaPath(k)
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}

// commit makes a verified temp file the entry for k: fsync the bytes, write
// the Meta sidecar (durable before the data appears), rename the data into
// place and fsync the directory. f stays open for the fill's readers.
func (c *Cache) commit(k Key, f *os.File, m Meta) error {
	if err := c.fault("sync"); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	if err := c.writeMeta(k, m); err != nil {
		return err
	}
	if err := c.fault("rename"); err != nil {
		return err
	}
	dst := c.dataPath(k)
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}
