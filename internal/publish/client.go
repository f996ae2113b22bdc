package publish

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// MaxMissingBatch is the most digests asked about in one missing request.
const MaxMissingBatch = 10_000

// Conditions a master reports, matched by errors.Is on a *RemoteError.
var (
	ErrUnauthorized   = errors.New("master refused the token (check --token-file)")
	ErrUntrustedKey   = errors.New("master does not trust the signing key (add its .pub to pkgserve --trusted-key)")
	ErrConflict       = errors.New("another publish of this set won meanwhile")
	ErrSetsChanged    = errors.New("SETS changed meanwhile")
	ErrMissingObjects = errors.New("master lacks objects the manifest lists")
	ErrRejected       = errors.New("master rejected the request")
	ErrNotFound       = errors.New("not found on the master")
)

// RemoteError is an error answer of the master: its status, the code and
// message of its JSON body.
type RemoteError struct {
	Op      string // "missing", "put <sha256>", "commit", ...
	Status  int
	Code    string
	Message string
	Missing []digest.SHA256 // code "missing_objects"
}

// Error reports the operation, the status and code, the master's message
// and, where there is one, what an operator can do about it.
func (e *RemoteError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("master: %s: %d: %s", e.Op, e.Status, msg)
	if e.Code != "" {
		s = fmt.Sprintf("master: %s: %d %s: %s", e.Op, e.Status, e.Code, msg)
	}
	if h := e.hint(); h != "" {
		s += " (" + h + ")"
	}
	return s
}

// hint says what an operator can do about e.
func (e *RemoteError) hint() string {
	switch {
	case e.Status == http.StatusUnauthorized:
		return "the master refused the token: check --token-file against pkgserve --publish-token-file"
	case e.Status == http.StatusForbidden:
		return "the master does not trust this signing key: add its .pub to pkgserve --trusted-key"
	case e.Code == "conflict":
		return "another publisher committed this set meanwhile: rerun to publish on top of it"
	case e.Code == "rollback":
		return "the master holds a newer set ID: check this host's clock"
	case e.Code == "expired":
		return "check this host's clock and --valid"
	case e.Code == "not_refresh":
		return "a refresh only moves the expiry later: check --valid"
	case e.Code == "unknown_operation" || e.Status == http.StatusNotFound && strings.Contains(e.Message, "no such publish operation"):
		return "the master's pkgserve is older than this pkgpublish: update it"
	case e.Status == http.StatusInsufficientStorage:
		return "the master's disk is full"
	case e.Status == http.StatusRequestEntityTooLarge:
		return "raise pkgserve --max-object-size"
	}
	return ""
}

// Is reports whether e is target: it maps the status and code to this
// package's sentinels and to setid.ErrRollback, manifest.ErrExpired and
// layout.ErrNotRefresh.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrUntrustedKey:
		return e.Status == http.StatusForbidden
	case ErrConflict:
		return e.Status == http.StatusConflict && e.Code == "conflict"
	case ErrSetsChanged:
		return e.Status == http.StatusConflict && e.Code == "sets_changed"
	case setid.ErrRollback:
		return e.Status == http.StatusConflict && e.Code == "rollback"
	case ErrMissingObjects:
		return e.Code == "missing_objects"
	case manifest.ErrExpired:
		return e.Status == http.StatusUnprocessableEntity && e.Code == "expired"
	case layout.ErrNotRefresh:
		return e.Code == "not_refresh"
	case ErrNotFound:
		return e.Status == http.StatusNotFound
	case ErrRejected:
		return e.Status >= 400 && e.Status < 500
	}
	return false
}

// ClientConfig configures a Client. URL and Token are required.
type ClientConfig struct {
	// URL is the master's base URL, e.g. "https://pkg.example.org/".
	URL string
	// Token is the bearer token of the upload API.
	Token string
	// HTTPClient sends the requests. If nil, one with dial, TLS and
	// response-header timeouts (no overall timeout: objects may be big).
	HTTPClient *http.Client
	// Retries is how many times a request failing with a connection error or
	// a 5xx (but 501 and 507) is retried. If zero, 5; negative: none.
	Retries int
	// RetryWait is the first wait before a retry; it doubles each time, up
	// to 30 s. If zero, 500 ms.
	RetryWait time.Duration
	// Logger receives retries. If nil, nothing is logged.
	Logger *slog.Logger
	// StallTimeout aborts (and retries) an upload that sends no byte for
	// this long. If zero, 2 minutes.
	StallTimeout time.Duration
}

// errStalled is the cause of an upload aborted by StallTimeout.
var errStalled = errors.New("upload stalled: no byte accepted by the master")

// Client speaks the master's upload API. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client
	tries int
	wait  time.Duration
	stall time.Duration
	log   *slog.Logger

	noBatch atomic.Bool // the master answered 404 to a batch: PUT each object
}

// NewClient returns a Client of the master at cfg.URL.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: master URL %q: want http(s)://host[/path]", ErrConfig, cfg.URL)
	}
	token := strings.TrimSpace(cfg.Token)
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrConfig)
	}
	c := &Client{base: u, token: token, hc: cfg.HTTPClient, tries: 1 + cfg.Retries, wait: cfg.RetryWait, log: cfg.Logger}
	if cfg.Retries == 0 {
		c.tries = 6
	} else if cfg.Retries < 0 {
		c.tries = 1
	}
	if c.wait <= 0 {
		c.wait = 500 * time.Millisecond
	}
	if c.stall = cfg.StallTimeout; c.stall <= 0 {
		c.stall = 2 * time.Minute
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 5 * time.Minute, // a commit may wait 30 s for the lock, then link a large set
			ExpectContinueTimeout: time.Second,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	return c, nil
}

// smallCallTimeout bounds a request whose body is small (missing, SETS,
// manifest, commit): a hung master fails the publish instead of hanging cron.
const smallCallTimeout = 10 * time.Minute

// retryable reports whether a failed attempt may succeed if repeated.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Status >= 500 && re.Status != http.StatusNotImplemented && re.Status != http.StatusInsufficientStorage ||
			re.Status == http.StatusTooManyRequests
	}
	var ce *ChangedError
	return !errors.As(err, &ce) && !errors.Is(err, ErrConfig)
}

// retry runs f until it succeeds, fails for good, or runs out of tries.
func (c *Client) retry(ctx context.Context, op string, f func() error) error {
	wait := c.wait
	for try := 1; ; try++ {
		err := f()
		if err == nil || try >= c.tries || !retryable(ctx, err) {
			return err
		}
		c.log.Warn("master request failed, retrying", "op", op, "err", err, "dur", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// do sends req and returns the response if its status is 2xx; any other
// status becomes a *RemoteError (its body read and closed).
func (c *Client) do(req *http.Request, op string, auth bool) (*http.Response, error) {
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("master: %s: %w", op, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	re := &RemoteError{Op: op, Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20)) // best effort: the status says enough
	var j struct {
		Error   string   `json:"error"`
		Code    string   `json:"code"`
		Missing []string `json:"missing"`
	}
	if json.Unmarshal(body, &j) == nil {
		re.Code, re.Message = j.Code, j.Error
		for _, s := range j.Missing {
			if d, err := digest.Parse(s); err == nil {
				re.Missing = append(re.Missing, d)
			}
		}
	} else if resp.StatusCode != http.StatusNotFound {
		re.Message = strings.TrimSpace(string(body[:min(len(body), 200)]))
	}
	return nil, re
}

// get fetches a small public file (SETS, a manifest).
func (c *Client) get(ctx context.Context, u, op string, limit int64) ([]byte, error) {
	var data []byte
	err := c.retry(ctx, op, func() error {
		ctx, cancel := context.WithTimeout(ctx, smallCallTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := c.do(req, op, false)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		data, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return fmt.Errorf("master: %s: %w", op, err)
		}
		if int64(len(data)) > limit {
			return fmt.Errorf("master: %s: over %d bytes", op, limit)
		}
		return nil
	})
	return data, err
}

// Sets returns the master's SETS file and its signature, or an error
// matching ErrNotFound if nothing was ever published there.
func (c *Client) Sets(ctx context.Context) (data, sig []byte, err error) {
	if data, err = c.get(ctx, route.SetsURL(c.base, false), "get SETS", setid.MaxSetsBytes); err != nil {
		return nil, nil, err
	}
	if sig, err = c.get(ctx, route.SetsURL(c.base, true), "get SETS signature", sign.MaxSignatureBytes); err != nil {
		return nil, nil, err
	}
	return data, sig, nil
}

// Manifest returns the manifest file of a set and its signature.
func (c *Client) Manifest(ctx context.Context, set string, id setid.ID) (data, sig []byte, err error) {
	op := "get manifest " + set + "/" + id.String()
	if data, err = c.get(ctx, route.ManifestURL(c.base, set, id, false), op, manifest.MaxDecodedBytes); err != nil {
		return nil, nil, err
	}
	if sig, err = c.get(ctx, route.ManifestURL(c.base, set, id, true), op+" signature", sign.MaxSignatureBytes); err != nil {
		return nil, nil, err
	}
	return data, sig, nil
}

// CheckAuth asks an empty missing query, so a wrong token or URL fails
// before a long hash rather than at the first upload.
func (c *Client) CheckAuth(ctx context.Context) error {
	return c.postMissing(ctx, nil, func(body io.Reader) error {
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 1<<10)) // empty by the protocol
		return nil
	})
}

// Missing returns the subset of ds the master lacks, in order, asking in
// batches of at most MaxMissingBatch.
func (c *Client) Missing(ctx context.Context, ds []digest.SHA256) ([]digest.SHA256, error) {
	var out []digest.SHA256
	for len(ds) > 0 {
		batch := ds[:min(len(ds), MaxMissingBatch)]
		ds = ds[len(batch):]
		var body bytes.Buffer
		body.Grow(65 * len(batch))
		asked := make(map[digest.SHA256]bool, len(batch))
		for _, d := range batch {
			body.WriteString(d.String())
			body.WriteByte('\n')
			asked[d] = true
		}
		var got []digest.SHA256
		err := c.postMissing(ctx, body.Bytes(), func(answer io.Reader) error {
			got = got[:0]
			sc := bufio.NewScanner(io.LimitReader(answer, int64(body.Len())+1))
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "" {
					continue
				}
				d, err := digest.Parse(line)
				if err != nil || !asked[d] {
					return fmt.Errorf("master: missing: answer line %q not one asked about", line)
				}
				got = append(got, d)
			}
			if err := sc.Err(); err != nil {
				return fmt.Errorf("master: missing: %w", err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// StageHint tells the master that a publish of set will commit changes:
// an empty missing query with ?set=<name>, on which a master that knows
// the hint starts building the set's directory from its live set, so that
// the commit links only what changed (others ignore it). Not retried: it
// only saves time.
func (c *Client) StageHint(ctx context.Context, set string) error {
	u := route.PublishURL(c.base, "missing") + "?set=" + url.QueryEscape(set)
	return c.smallPost(ctx, "missing", u, "text/plain", nil, discardUpTo(1<<10)) // empty by the protocol
}

// postMissing sends the missing query body (digests, one a line; nil for
// none), retrying, and hands the answer's body to read (once per attempt).
func (c *Client) postMissing(ctx context.Context, body []byte, read func(io.Reader) error) error {
	return c.retry(ctx, "missing", func() error {
		return c.smallPost(ctx, "missing", route.PublishURL(c.base, "missing"), "text/plain", body, read)
	})
}

// smallPost makes one authenticated POST of body to u under
// smallCallTimeout and hands the answer's body to read.
func (c *Client) smallPost(ctx context.Context, op, u, contentType string, body []byte, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(ctx, smallCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := c.do(req, op, true)
	if err != nil {
		return err
	}
	if err := read(resp.Body); err != nil {
		_ = resp.Body.Close() // the answer is already refused
		return err
	}
	return resp.Body.Close()
}

// discardUpTo reads and drops an answer known to say nothing new, at most
// n bytes of it.
func discardUpTo(n int64) func(io.Reader) error {
	return func(r io.Reader) error {
		_, _ = io.Copy(io.Discard, io.LimitReader(r, n))
		return nil
	}
}

// PutObject uploads one object from the file at path (relPath names it in
// errors), retrying on connection errors and 5xx. If the file's bytes are
// not d and size (it changed since it was hashed), the upload is aborted
// (a size that differs, at once) or the master refuses it (the sha256: it
// verifies every object) and PutObject returns a *ChangedError naming the
// file (see changedSources). progress, if not nil, gets
// the bytes sent (negative after a failed attempt, to take them back).
func (c *Client) PutObject(ctx context.Context, d digest.SHA256, size int64, path, relPath string,
	open func(string) (io.ReadCloser, error), progress func(int64)) error {
	op := "put " + d.String()
	err := c.upload(ctx, op, http.MethodPut, route.PublishURL(c.base, "objects/"+d.String()), size,
		func(sent, eof func()) (uploadBody, error) {
			f, err := open(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", relPath, err)
			}
			sr := &sendReader{r: io.LimitReader(f, size+1), size: size, path: relPath,
				progress: progress, sent: sent, eof: eof}
			return &fileBody{sendReader: sr, f: f}, nil
		})
	return changedSources(err, []Object{{SHA256: d, Size: size, Path: path, Name: relPath}}, open)
}

// changedSources turns the master's refusal of uploaded bytes (digest or
// size mismatch) into a *ChangedError naming the source file of objs that
// no longer holds its object: uploads are not hashed again while sent (the
// master verifies every byte before it keeps an object, so a second hash
// here would only name the file sooner), and this re-reads the files of a
// refused upload to name the one that changed. If none did (bytes damaged
// on the way), err is returned as is.
func changedSources(err error, objs []Object, open func(string) (io.ReadCloser, error)) error {
	var re *RemoteError
	if !errors.As(err, &re) || (re.Code != "digest_mismatch" && re.Code != "size_mismatch") {
		return err
	}
	for _, o := range objs {
		f, oerr := open(o.Path)
		if oerr != nil {
			return &ChangedError{Path: o.Name, Detail: "unreadable after the master refused its bytes: " + oerr.Error()}
		}
		got, n, herr := digest.FromReader(f)
		_ = f.Close() // read-only; a read error is reported below
		switch {
		case herr != nil:
			return &ChangedError{Path: o.Name, Detail: "unreadable after the master refused its bytes: " + herr.Error()}
		case n != o.Size:
			return &ChangedError{Path: o.Name, Detail: fmt.Sprintf("size %d -> %d while sent", o.Size, n)}
		case got != o.SHA256:
			return &ChangedError{Path: o.Name, Detail: "content differs from its hash while sent"}
		}
	}
	return err
}

// uploadBody is the body of one upload attempt: source files read while
// they are hashed.
type uploadBody interface {
	io.Reader
	io.Closer         // closes the source files
	changed() error   // the *ChangedError that aborted the body, or nil
	sentBytes() int64 // file bytes sent (reported to progress)
	progress() func(int64)
}

// fileBody is the body of a single PUT: one file.
type fileBody struct {
	*sendReader
	f io.Closer
}

func (b *fileBody) Close() error          { return b.f.Close() }
func (b *fileBody) changed() error        { return b.sendReader.err }
func (b *fileBody) sentBytes() int64      { return b.sendReader.n }
func (b *fileBody) progress() func(int64) { return b.sendReader.progress }

// upload sends one request of length bytes whose body newBody makes for
// each attempt, retrying on connection errors and 5xx. sent and eof are
// the hooks of the stall timer: every byte sent rearms it, the end of the
// body stops it (the master then answers). The answer's body is discarded.
func (c *Client) upload(ctx context.Context, op, method, u string, length int64,
	newBody func(sent, eof func()) (uploadBody, error)) error {
	return c.retry(ctx, op, func() error {
		// The transport has no write timeout: a master that stops reading
		// would hold the upload forever. Every byte sent rearms the timer.
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		stall := time.AfterFunc(c.stall, func() { cancel(errStalled) })
		defer stall.Stop()
		body, err := newBody(func() { stall.Reset(c.stall) }, func() { stall.Stop() })
		if err != nil {
			return err
		}
		defer body.Close()
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return err
		}
		req.ContentLength = length
		if length == 0 {
			// An empty body is never read: check the file is still empty.
			if n, _ := body.Read(make([]byte, 1)); n > 0 || body.changed() != nil {
				return body.changed()
			}
			req.Body = http.NoBody
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		if method == http.MethodPost {
			// A master that refuses the call (an older one without it, a
			// wrong token) answers before the body is sent.
			req.Header.Set("Expect", "100-continue")
		}
		resp, err := c.do(req, op, true)
		if cerr := body.changed(); cerr != nil {
			if resp != nil {
				resp.Body.Close()
			}
			return cerr // the source's error, not the transport's: a *ChangedError is never retried
		}
		if err != nil {
			if p := body.progress(); p != nil {
				p(-body.sentBytes())
			}
			if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
				err = fmt.Errorf("master: %s: %w", op, cause)
			}
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16)) // a short JSON status: nothing in it we need
		return resp.Body.Close()
	})
}

// sendReader passes a file's bytes to an upload, counting them; at the end
// it refuses (instead of io.EOF) a file whose size is not the hashed one.
// It does not hash: the master verifies each object's sha256 and keeps
// nothing of one that does not match (changedSources then names the file).
type sendReader struct {
	r        io.Reader
	size, n  int64
	path     string
	progress func(int64)
	sent     func() // called after each read that returned bytes
	eof      func() // called at the end of the file (the master then answers)
	err      error  // a *ChangedError once detected
}

func (s *sendReader) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if n > 0 {
		if s.progress != nil {
			s.progress(int64(n))
		}
		if s.sent != nil {
			s.sent()
		}
	}
	switch {
	case s.n > s.size:
		s.err = &ChangedError{Path: s.path, Detail: fmt.Sprintf("grew beyond %d bytes while sent", s.size)}
	case err == io.EOF && s.n != s.size:
		s.err = &ChangedError{Path: s.path, Detail: fmt.Sprintf("%d bytes sent, %d hashed", s.n, s.size)}
	}
	if s.err != nil {
		return n, s.err
	}
	if err == io.EOF && s.eof != nil {
		s.eof()
	}
	return n, err
}

// CommitRequest is the body of a commit.
type CommitRequest struct {
	Manifest    []byte `json:"manifest"`
	ManifestSig []byte `json:"manifest_sig"`
	Sets        []byte `json:"sets"`
	SetsSig     []byte `json:"sets_sig"`
}

// Commit asks the master to switch the set to the signed manifest and SETS.
func (c *Client) Commit(ctx context.Context, cr CommitRequest) error {
	return c.postCommit(ctx, "commit", cr)
}

// Refresh asks the master to replace the live manifest of a set with cr's,
// the same manifest re-signed with a later expiry, and SETS with cr's.
func (c *Client) Refresh(ctx context.Context, cr CommitRequest) error {
	return c.postCommit(ctx, "refresh", cr)
}

// postCommit sends cr to the publish call op (commit or refresh), retrying.
func (c *Client) postCommit(ctx context.Context, op string, cr CommitRequest) error {
	body, err := json.Marshal(cr) // []byte fields marshal as standard base64, as the API wants
	if err != nil {
		return err
	}
	return c.retry(ctx, op, func() error {
		// The answer is {"set","id"}: we know both.
		return c.smallPost(ctx, op, route.PublishURL(c.base, op), "application/json", body, discardUpTo(1<<16))
	})
}
