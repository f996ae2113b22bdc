package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
)

// Batched uploads (PUBLISH_API.md, "Batched upload"): objects of at most
// BatchObjectBytes go to the master in batches of at most BatchBytes or
// BatchObjects objects, each one POST; larger ones get a PUT each.
const (
	BatchObjectBytes = 256 << 10
	BatchBytes       = 8 << 20
	BatchObjects     = 2000
)

// Object is one object to upload from a source file.
type Object struct {
	SHA256 digest.SHA256
	Size   int64  // bytes, as hashed
	Path   string // the file to read
	Name   string // names the file in errors (its set-relative path)
	data   []byte // the bytes hashed, if kept (see retainer): sent instead of reading Path
}

// batches groups objs into units of upload: a batch of small objects (up
// to BatchBytes and BatchObjects), or a single object larger than
// BatchObjectBytes. Order is kept within each kind.
func batches(objs []Object) [][]Object {
	var out [][]Object
	var cur []Object
	var curBytes int64
	for _, o := range objs {
		if o.Size > BatchObjectBytes {
			out = append(out, []Object{o})
			continue
		}
		if len(cur) > 0 && (len(cur) >= BatchObjects || curBytes+o.Size > BatchBytes) {
			out = append(out, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, o)
		curBytes += o.Size
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// batchHeader is the header line of o's record.
func batchHeader(o Object) string {
	return o.SHA256.String() + " " + strconv.FormatInt(o.Size, 10) + "\n"
}

// PutObjects uploads objs: a single object with PutObject, more as one
// batch POST, retried as a whole on connection errors and 5xx (the master
// skips the objects it already holds). A file that changed since it was
// hashed is a *ChangedError, as in PutObject. If the master has no batch upload (an older one answers
// 404), PutObjects falls back to one PutObject per object, for the rest of
// the Client's life.
func (c *Client) PutObjects(ctx context.Context, objs []Object,
	open func(string) (io.ReadCloser, error), progress func(int64)) error {
	if len(objs) > 1 && !c.noBatch.Load() {
		err := c.putBatch(ctx, objs, open, progress)
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != http.StatusNotFound {
			return err
		}
		if !c.noBatch.Swap(true) {
			c.log.Info("master has no batch upload, sending objects one by one")
		}
	}
	open = keptOpener(objs, open)
	for _, o := range objs {
		if err := c.PutObject(ctx, o.SHA256, o.Size, o.Path, o.Name, open, progress); err != nil {
			return err
		}
	}
	return nil
}

// keptOpener returns open, except that the file of an object of objs whose
// bytes were kept from its hash (see retainer) opens those bytes: they are
// what is sent, and what changedSources must check after a refusal (a
// refusal of kept bytes means damage on the way, not a changed file).
func keptOpener(objs []Object, open func(string) (io.ReadCloser, error)) func(string) (io.ReadCloser, error) {
	kept := make(map[string][]byte)
	for _, o := range objs {
		if o.data != nil {
			kept[o.Path] = o.data
		}
	}
	if len(kept) == 0 {
		return open
	}
	return func(path string) (io.ReadCloser, error) {
		if b, ok := kept[path]; ok {
			return io.NopCloser(bytes.NewReader(b)), nil
		}
		return open(path)
	}
}

// putBatch sends objs as one POST /.pkgcdn/publish/batch.
func (c *Client) putBatch(ctx context.Context, objs []Object,
	open func(string) (io.ReadCloser, error), progress func(int64)) error {
	var length, size int64
	for _, o := range objs {
		length += int64(len(batchHeader(o))) + o.Size
		size += o.Size
	}
	op := fmt.Sprintf("batch of %d objects (%d bytes)", len(objs), size)
	open = keptOpener(objs, open)
	err := c.upload(ctx, op, http.MethodPost, route.PublishURL(c.base, "batch"), length,
		func(sent, eof func()) (uploadBody, error) {
			return &batchBody{objs: objs, open: open, prog: progress, sent: sent, eof: eof}, nil
		})
	return changedSources(err, objs, open)
}

// batchBody is the body of a batch: each object's header line, then its
// file's bytes through a sendReader, which refuses a file whose size changed.
type batchBody struct {
	objs []Object
	open func(string) (io.ReadCloser, error)
	prog func(int64)
	sent func()
	eof  func()

	hdr   string        // rest of the current header line to send
	cur   *sendReader   // the current file; nil between files
	f     io.ReadCloser // cur's file
	n     int64         // file bytes sent by the files done
	err   error         // sticky: a *ChangedError, or the error opening a file
	ended bool
}

func (b *batchBody) Read(p []byte) (int, error) {
	for {
		switch {
		case b.err != nil:
			return 0, b.err
		case b.hdr != "":
			n := copy(p, b.hdr)
			b.hdr = b.hdr[n:]
			if b.sent != nil {
				b.sent()
			}
			return n, nil
		case b.cur != nil:
			n, err := b.cur.Read(p)
			if err == io.EOF {
				b.n += b.cur.n
				err = b.f.Close()
				b.cur, b.f = nil, nil
				if err != nil {
					b.err = err
				}
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				b.err = err
			}
			return n, err
		case len(b.objs) == 0:
			if !b.ended && b.eof != nil {
				b.ended = true
				b.eof()
			}
			return 0, io.EOF
		default:
			o := b.objs[0]
			b.objs = b.objs[1:]
			f, err := b.open(o.Path) // the kept bytes, if any: see keptOpener
			if err != nil {
				b.err = fmt.Errorf("%s: %w", o.Name, err)
				return 0, b.err
			}
			b.f = f
			b.cur = &sendReader{r: io.LimitReader(f, o.Size+1), size: o.Size,
				path: o.Name, progress: b.prog, sent: b.sent}
			b.hdr = batchHeader(o)
		}
	}
}

// Close closes the file being sent, if any.
func (b *batchBody) Close() error {
	if b.f == nil {
		return nil
	}
	err := b.f.Close()
	b.f, b.cur = nil, nil
	return err
}

// changed returns the error of the source files: a *ChangedError, or the
// error opening or closing one. Either ends the attempt at once.
func (b *batchBody) changed() error { return b.err }

func (b *batchBody) sentBytes() int64 {
	if b.cur != nil {
		return b.n + b.cur.n
	}
	return b.n
}

func (b *batchBody) progress() func(int64) { return b.prog }
