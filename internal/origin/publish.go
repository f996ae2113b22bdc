package origin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// Publish API limits (PUBLISH_API.md).
const (
	maxMissingBody  = 1 << 20
	maxMissingLines = 10000
	maxCommitBody   = 256 << 20
	maxBatchBody    = 1 << 30
	maxBatchRecords = 100_000
)

// apiErrorBody is the JSON body of every publish API error.
type apiErrorBody struct {
	Error   string   `json:"error"`
	Code    string   `json:"code"`
	Missing []string `json:"missing,omitempty"`
}

// commitRequest is the body of POST /.pkgcdn/publish/commit; []byte fields
// are standard base64 in JSON.
type commitRequest struct {
	Manifest    []byte `json:"manifest"`
	ManifestSig []byte `json:"manifest_sig"`
	Sets        []byte `json:"sets"`
	SetsSig     []byte `json:"sets_sig"`
}

// CommitResponse is the body of a successful commit, and the notice
// POSTed to each --notify URL.
type CommitResponse struct {
	Set string `json:"set"`
	ID  string `json:"id"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs get here.
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error","code":"internal"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n')) // the client left: nothing to do
}

func apiErr(status int, code, msg string, err error) *httpError {
	return &httpError{status: status, code: code, msg: msg, err: err}
}

// servePublish authenticates, then dispatches one publish API call.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request, op string) {
	if s.cfg.PublishToken == "" {
		s.fail(w, r, false, errNotFound)
		return
	}
	// Before anything else, and before the body is read.
	if !s.authorized(r) {
		s.met.rejected.WithLabelValues("unauthorized").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="pkgcdn publish"`)
		s.fail(w, r, true, apiErr(http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token", nil))
		return
	}
	var err error
	switch {
	case op == "missing":
		if !s.allow(w, r, http.MethodPost) {
			return
		}
		err = s.publishMissing(w, r)
	case op == "commit":
		if !s.allow(w, r, http.MethodPost) {
			return
		}
		err = s.publishCommit(w, r)
	case op == "refresh":
		if !s.allow(w, r, http.MethodPost) {
			return
		}
		err = s.publishRefresh(w, r)
	case op == "batch":
		if !s.allow(w, r, http.MethodPost) {
			return
		}
		err = s.publishBatch(w, r)
	case strings.HasPrefix(op, "objects/"):
		if !s.allow(w, r, http.MethodPut) {
			return
		}
		err = s.publishObject(w, r, strings.TrimPrefix(op, "objects/"))
	default:
		err = apiErr(http.StatusNotFound, "unknown_operation", "no such publish operation", nil)
	}
	if err != nil {
		var he *httpError
		if errors.As(err, &he) && he.code != "" && he.status < 500 {
			s.met.rejected.WithLabelValues(he.code).Inc()
		}
		s.fail(w, r, true, err)
	}
}

func (s *Server) allow(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	s.fail(w, r, true, apiErr(http.StatusMethodNotAllowed, "method_not_allowed", "use "+method, nil))
	return false
}

// authorized compares the bearer token in constant time. Both sides are
// hashed first so that not even the token's length leaks.
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1 && ok
}

// bodyErr maps a request body read error: over the limit is a 413.
func bodyErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apiErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", mbe.Limit), err)
	}
	return apiErr(http.StatusBadRequest, "bad_request", "reading the body", err)
}

// publishMissing answers which of the listed objects the root lacks. With
// ?set=<name> it also starts staging that set ahead of its commit (see
// stageAhead).
func (s *Server) publishMissing(w http.ResponseWriter, r *http.Request) error {
	if set := r.URL.Query().Get("set"); set != "" {
		s.stageAhead(set)
	}
	body := http.MaxBytesReader(w, r.Body, maxMissingBody)
	sc := bufio.NewScanner(body)
	var out bytes.Buffer
	n := 0
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			continue
		}
		if n++; n > maxMissingLines {
			return apiErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("more than %d hashes", maxMissingLines), nil)
		}
		d, err := digest.Parse(line)
		if err != nil {
			return apiErr(http.StatusBadRequest, "bad_request", fmt.Sprintf("line %d: not a sha256", n), err)
		}
		have, err := s.root.HasObject(d)
		if err != nil {
			return err
		}
		if !have {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return bodyErr(err)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out.Bytes()) // the client left: nothing to do
	return nil
}

// uploadBody reads a request body, pushing the read deadline forward as
// bytes arrive (a stalled uploader is cut off after UploadStall) and
// remembering a read error, so that a body cut off is told apart from a
// body with the wrong bytes.
type uploadBody struct {
	r     io.Reader
	rc    *http.ResponseController
	stall time.Duration
	err   error
}

func (b *uploadBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.stall)) // unsupported: no deadline
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// publishObject stores one object, verified against its name while it is
// written; anything but a complete, matching body keeps nothing.
func (s *Server) publishObject(w http.ResponseWriter, r *http.Request, hash string) error {
	d, err := digest.Parse(hash)
	if err != nil {
		return apiErr(http.StatusBadRequest, "bad_request", "object name is not a sha256", err)
	}
	if r.ContentLength < 0 {
		return apiErr(http.StatusLengthRequired, "length_required", "Content-Length required", nil)
	}
	if r.ContentLength > s.cfg.MaxObjectSize {
		return apiErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("object over %d bytes", s.cfg.MaxObjectSize), nil)
	}
	have, err := s.root.HasObject(d)
	if err != nil {
		return err
	}
	if have {
		writeJSON(w, http.StatusOK, map[string]any{"sha256": d.String(), "stored": false})
		return nil
	}
	body := &uploadBody{r: r.Body, rc: http.NewResponseController(w), stall: s.cfg.UploadStall}
	err = s.root.PutObject(d, r.ContentLength, body)
	_ = body.rc.SetReadDeadline(time.Time{}) // unsupported: nothing to reset
	var me *digest.MismatchError
	var se *digest.SizeError
	switch {
	case err == nil:
	case body.err != nil:
		// The client's own read error is the cause; the store's error may
		// name a temp file, which is not the client's business.
		s.log.Debug("upload cut off", "sha256", d.String(), "err", err)
		return apiErr(http.StatusBadRequest, "truncated", "body cut off; nothing kept", body.err)
	case errors.As(err, &me):
		return apiErr(http.StatusBadRequest, "digest_mismatch", fmt.Sprintf("body has sha256 %s, not %s; nothing kept", me.Got, d), err)
	case errors.As(err, &se):
		return apiErr(http.StatusBadRequest, "size_mismatch", "body size differs from Content-Length; nothing kept", err)
	case errors.Is(err, syscall.ENOSPC):
		return apiErr(http.StatusInsufficientStorage, "disk_full", "master disk full; nothing kept", err)
	default:
		return err
	}
	s.met.objects.Inc()
	s.met.objectBytes.Add(float64(r.ContentLength))
	s.log.Debug("object stored", "sha256", d.String(), "bytes", r.ContentLength)
	writeJSON(w, http.StatusCreated, map[string]any{"sha256": d.String(), "stored": true})
	return nil
}

// BatchResponse is the body of a successful batch upload: how many of its
// objects were stored, and how many the root already held (their bytes
// were read and dropped).
type BatchResponse struct {
	Stored  int `json:"stored"`
	Present int `json:"present"`
}

// publishBatch stores a sequence of records "<sha256 hex> <size>\n" + size
// bytes, each verified like a single PUT. A refused record stops the batch;
// the records before it stay stored (they are verified and content-addressed,
// so a rerun just skips them), nothing of it or after it is kept.
func (s *Server) publishBatch(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength < 0 {
		return apiErr(http.StatusLengthRequired, "length_required", "Content-Length required", nil)
	}
	if r.ContentLength > maxBatchBody {
		return apiErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("batch over %d bytes", maxBatchBody), nil)
	}
	body := &uploadBody{r: r.Body, rc: http.NewResponseController(w), stall: s.cfg.UploadStall}
	defer func() { _ = body.rc.SetReadDeadline(time.Time{}) }() // unsupported: nothing to reset
	br := bufio.NewReaderSize(body, 64<<10)
	var res BatchResponse
	for i := 1; ; i++ {
		line, err := br.ReadSlice('\n')
		if err == io.EOF && len(line) == 0 && body.err == nil {
			break
		}
		if err != nil {
			if body.err != nil || err == io.EOF {
				return batchErr(i, res, "truncated", "body cut off in its header", body.err)
			}
			return batchErr(i, res, "bad_request", "header line too long", err)
		}
		if i > maxBatchRecords {
			return apiErr(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("more than %d records", maxBatchRecords), nil)
		}
		d, size, err := parseBatchHeader(line)
		if err != nil {
			return batchErr(i, res, "bad_request", "bad header line", err)
		}
		if size > s.cfg.MaxObjectSize {
			he := batchErr(i, res, "too_large", fmt.Sprintf("object over %d bytes", s.cfg.MaxObjectSize), nil)
			he.status = http.StatusRequestEntityTooLarge
			return he
		}
		// PutObject reads nothing when the object is present: rec.N tells.
		// Only an empty object needs asking, to be counted right.
		have := false
		if size == 0 {
			if have, err = s.root.HasObject(d); err != nil {
				return err
			}
		}
		rec := &io.LimitedReader{R: br, N: size}
		if !have {
			err = s.root.PutObject(d, size, rec)
		}
		var me *digest.MismatchError
		var se *digest.SizeError
		switch {
		case err == nil:
		case body.err != nil:
			s.log.Debug("upload cut off", "sha256", d.String(), "err", err)
			return batchErr(i, res, "truncated", fmt.Sprintf("body cut off in object %s; nothing of it kept", d), body.err)
		case errors.As(err, &me):
			return batchErr(i, res, "digest_mismatch", fmt.Sprintf("body has sha256 %s, not %s; nothing of it kept", me.Got, d), err)
		case errors.As(err, &se):
			// The record reader never yields more than size bytes: fewer
			// means the body ended within the record.
			return batchErr(i, res, "size_mismatch", fmt.Sprintf("body ends within the %d bytes of object %s; nothing of it kept", size, d), err)
		case errors.Is(err, syscall.ENOSPC):
			he := batchErr(i, res, "disk_full", "master disk full; nothing of it kept", err)
			he.status = http.StatusInsufficientStorage
			return he
		default:
			return err
		}
		// A present object: skip its bytes.
		if have || rec.N > 0 {
			if _, err := io.Copy(io.Discard, rec); err != nil || rec.N > 0 {
				return batchErr(i, res, "truncated", fmt.Sprintf("body cut off in object %s", d), errors.Join(body.err, err))
			}
			res.Present++
			continue
		}
		res.Stored++
		s.met.objects.Inc()
		s.met.objectBytes.Add(float64(size))
		s.log.Debug("object stored", "sha256", d.String(), "bytes", size)
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// batchErr is the 400 refusing record i (1-based) of a batch, saying
// what of the batch was kept.
func batchErr(i int, res BatchResponse, code, msg string, err error) *httpError {
	return apiErr(http.StatusBadRequest, code, fmt.Sprintf("record %d: %s (records before it kept: %d stored, %d present)",
		i, msg, res.Stored, res.Present), err)
}

// errBatchHeader is the cause of a malformed batch record header.
var errBatchHeader = errors.New(`want "<sha256 hex> <size>\n"`)

// parseBatchHeader parses "<64 lower-case hex> <decimal size>\n" strictly:
// no sign, no leading zeros, no other spaces, no CR.
func parseBatchHeader(line []byte) (digest.SHA256, int64, error) {
	hexPart, sizePart, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(" "))
	if !ok || len(hexPart) != 64 || len(sizePart) == 0 || len(sizePart) > 19 ||
		(len(sizePart) > 1 && sizePart[0] == '0') {
		return digest.SHA256{}, 0, errBatchHeader
	}
	for _, c := range hexPart {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return digest.SHA256{}, 0, errBatchHeader
		}
	}
	for _, c := range sizePart {
		if c < '0' || c > '9' {
			return digest.SHA256{}, 0, errBatchHeader
		}
	}
	size, err := strconv.ParseInt(string(sizePart), 10, 64)
	if err != nil {
		return digest.SHA256{}, 0, errBatchHeader
	}
	d, err := digest.Parse(string(hexPart))
	if err != nil {
		return digest.SHA256{}, 0, errBatchHeader
	}
	return d, size, nil
}

// readCommit reads the JSON body of a commit or a refresh: the manifest
// (decoded, not yet verified), SETS and their signatures.
func readCommit(w http.ResponseWriter, r *http.Request) (commitRequest, *manifest.Manifest, error) {
	var req commitRequest
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return req, nil, apiErr(http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/json", err)
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxCommitBody))
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, nil, bodyErr(err)
		}
		return req, nil, apiErr(http.StatusBadRequest, "bad_request", "body is not the commit JSON", err)
	}
	if len(req.Manifest) == 0 || len(req.ManifestSig) == 0 || len(req.Sets) == 0 || len(req.SetsSig) == 0 {
		return req, nil, apiErr(http.StatusBadRequest, "bad_request", "manifest, manifest_sig, sets and sets_sig are all required", nil)
	}
	m, err := manifest.Decode(req.Manifest)
	if err != nil {
		return req, nil, apiErr(http.StatusBadRequest, "malformed", "manifest does not decode", err)
	}
	return req, m, nil
}

// lockRoot takes the root's Lock for a commit or a refresh, waiting at most
// LockTimeout: a lock held longer is a 409 "locked".
func (s *Server) lockRoot(r *http.Request) (unlock func() error, err error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.LockTimeout)
	defer cancel()
	unlock, err = s.root.Lock(ctx)
	if err != nil && (errors.Is(err, layout.ErrLocked) || errors.Is(err, context.DeadlineExceeded)) {
		return nil, apiErr(http.StatusConflict, "locked", "another publish holds the lock; try again", err)
	}
	return unlock, err
}

// publishCommit takes the root's lock and commits a set through
// layout.Commit, the same gate a local publish passes.
func (s *Server) publishCommit(w http.ResponseWriter, r *http.Request) error {
	req, m, err := readCommit(w, r)
	if err != nil {
		return err
	}
	// The commit must finish once started, whether or not the client waits
	// for the answer; layout.Commit is resumable, but a half-built set is
	// work for nobody.
	ctx := context.WithoutCancel(r.Context())
	unlock, err := s.lockRoot(r)
	if err != nil {
		return err
	}
	stage := s.takeAhead(m.Set)
	err = s.root.Commit(ctx, layout.Commit{
		Manifest: m, ManifestData: req.Manifest, ManifestSig: req.ManifestSig,
		SetsData: req.Sets, SetsSig: req.SetsSig, Stage: stage,
	}, s.cfg.Verifier, s.cfg.Now())
	if stage != nil {
		// A no-op once the Commit took it over.
		if derr := stage.Discard(); derr != nil {
			s.log.Warn("discard stage", "set", m.Set, "err", derr)
		}
	}
	if uerr := unlock(); uerr != nil {
		s.log.Error("unlock root", "err", uerr)
	}
	if err != nil {
		return commitErr(err)
	}
	s.keepManifest(m)
	if err := s.refresh(true); err != nil {
		s.log.Error("refresh sets after commit", "set", m.Set, "set_id", m.ID.String(), "err", err)
	}
	// The next publish of the set starts from this one: build its
	// directory now, while the master is idle, not during that publish.
	if s.running.Load() {
		s.stageAhead(m.Set)
	}
	s.met.commits.Inc()
	s.log.Info("set committed", "set", m.Set, "set_id", m.ID.String(), "remote", r.RemoteAddr)
	s.notifyAll(m)
	writeJSON(w, http.StatusOK, CommitResponse{Set: m.Set, ID: m.ID.String()})
	return nil
}

// notifyAll queues a push notice of m's set and ID for every --notify
// mirror, never waiting: a full queue drops the notice (mirrors poll).
func (s *Server) notifyAll(m *manifest.Manifest) {
	for _, u := range s.cfg.Notify {
		select {
		case s.notifyq <- notice{url: u, body: CommitResponse{Set: m.Set, ID: m.ID.String()}}:
		default:
			s.met.notify.WithLabelValues("dropped").Inc()
			s.log.Warn("notify queue full, notice dropped", "upstream", u, "set", m.Set, "set_id", m.ID.String())
		}
	}
}

// publishRefresh replaces the live manifest of a set with the same
// manifest re-signed with a new expiry (layout.Root.Refresh): `pkgpublish
// refresh --master`, for a set not rebuilt before its manifest expires.
func (s *Server) publishRefresh(w http.ResponseWriter, r *http.Request) error {
	req, m, err := readCommit(w, r)
	if err != nil {
		return err
	}
	ctx := context.WithoutCancel(r.Context()) // as a commit: finish once started
	unlock, err := s.lockRoot(r)
	if err != nil {
		return err
	}
	err = s.root.Refresh(ctx, layout.Commit{
		Manifest: m, ManifestData: req.Manifest, ManifestSig: req.ManifestSig,
		SetsData: req.Sets, SetsSig: req.SetsSig,
	}, s.cfg.Verifier, s.cfg.Now())
	if uerr := unlock(); uerr != nil {
		s.log.Error("unlock root", "err", uerr)
	}
	switch {
	case errors.Is(err, layout.ErrNotFound):
		return apiErr(http.StatusNotFound, "not_found", "the set is not published", err)
	case err != nil:
		return commitErr(err)
	}
	if err := s.refresh(true); err != nil {
		s.log.Error("refresh sets after manifest refresh", "set", m.Set, "set_id", m.ID.String(), "err", err)
	}
	s.met.refreshes.Inc()
	s.log.Info("manifest refreshed", "set", m.Set, "set_id", m.ID.String(),
		"expires", m.Expires.UTC().Format(time.RFC3339), "remote", r.RemoteAddr)
	s.notifyAll(m)
	writeJSON(w, http.StatusOK, CommitResponse{Set: m.Set, ID: m.ID.String()})
	return nil
}

// commitErr maps layout.Commit's refusals to PUBLISH_API.md's statuses.
func commitErr(err error) error {
	var mo *layout.MissingObjectsError
	switch {
	case errors.As(err, &mo):
		missing := make([]string, len(mo.Missing))
		for i, d := range mo.Missing {
			missing[i] = d.String()
		}
		he := apiErr(http.StatusUnprocessableEntity, "missing_objects", strconv.Itoa(len(missing))+" objects were never uploaded", err)
		he.missing = missing
		return he
	case errors.Is(err, sign.ErrUnknownKey):
		return apiErr(http.StatusForbidden, "untrusted_key", "signed by a key this master does not trust", err)
	case errors.Is(err, sign.ErrBadSignature):
		return apiErr(http.StatusForbidden, "bad_signature", "signature does not verify", err)
	case errors.Is(err, manifest.ErrMismatch):
		return apiErr(http.StatusForbidden, "bad_signature", "signature's trusted comment does not match", err)
	case errors.Is(err, manifest.ErrExpired):
		return apiErr(http.StatusUnprocessableEntity, "expired", "manifest expired", err)
	case errors.Is(err, setid.ErrRollback):
		return apiErr(http.StatusConflict, "rollback", "set ID not newer than the live one", err)
	case errors.Is(err, layout.ErrConflict):
		return apiErr(http.StatusConflict, "conflict", "the set was published meanwhile", err)
	case errors.Is(err, layout.ErrNotRefresh):
		return apiErr(http.StatusUnprocessableEntity, "not_refresh", "a refresh may change only the manifest's expiry", err)
	case errors.Is(err, layout.ErrSetsChanged):
		return apiErr(http.StatusConflict, "sets_changed", "SETS changed meanwhile; re-read it and retry", err)
	case errors.Is(err, manifest.ErrMalformed), errors.Is(err, setid.ErrBadSets), errors.Is(err, setid.ErrBadName):
		return apiErr(http.StatusBadRequest, "malformed", "malformed manifest or SETS", err)
	case errors.Is(err, syscall.ENOSPC):
		return apiErr(http.StatusInsufficientStorage, "disk_full", "master disk full", err)
	}
	return err
}

// Staging ahead of a commit. A set of 30,000 files costs its Commit 30,000
// link(2) calls (half a second on ext4). So right after each commit of a
// set, the master builds the directory of the set's next publish in
// staging/ (a layout.Stage) from the new live set's files, while it is
// idle; and a remote publisher that found a first file differing from the
// live set sends an empty missing query with ?set=<name>, which starts the
// same if no stage of the live set is there (a restart, a local publish).
// The commit of that set takes the stage over (layout.Commit.Stage),
// linking only what changed. A stage changes nothing else: one that no
// commit takes is discarded when the next hint for its set finds the live
// set changed or the stage older than aheadTTL; one that another
// process's GC or Recover removes (the master stages without the Lock)
// only costs the commit its head start.
//
// A stage stays right for as long as its live set is live (sets and
// objects are immutable, and Commit relinks what Recover found damaged):
// aheadTTL, a little over a day so that a daily publish finds the stage
// the last one left, only bounds how long an unused one is kept. Each
// costs its directory and a map of its paths (about 3 MB for 30,000).
const (
	aheadTTL = 26 * time.Hour
	aheadMax = 8 // sets staged at once per root
)

// aheadStages are a Server's stages being built or waiting for a commit,
// by set.
type aheadStages struct {
	mu     sync.Mutex // guards m, closed
	m      map[string]*aheadStage
	closed bool           // discardAhead ran: Run has ended, stage nothing more
	old    sync.WaitGroup // discards of stages replaced or evicted
}

type aheadStage struct {
	live  setid.ID // the live set it copies
	start time.Time
	done  chan struct{} // closed once st is set (or not) and linked
	st    *layout.Stage // nil if none could be made; read after done
}

// stageAhead starts staging set from its live set, unless a recent stage
// of that live set exists. It returns at once.
func (s *Server) stageAhead(set string) {
	if layout.ValidateSetName(set) != nil {
		return
	}
	live, err := s.root.Live(set)
	if err != nil {
		return // never published: nothing to start from
	}
	as := &s.ahead
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.closed {
		return
	}
	if as.m == nil {
		as.m = map[string]*aheadStage{}
	}
	old := as.m[set]
	if old != nil && old.live == live && time.Since(old.start) < aheadTTL && !old.gone() {
		return
	}
	if old == nil && len(as.m) >= aheadMax {
		// Make room: the stage unused longest goes (every set that was
		// committed holds one, so a full map is the normal state of a
		// master with more sets than aheadMax).
		var oldest string
		for k, a := range as.m {
			if oldest == "" || a.start.Before(as.m[oldest].start) {
				oldest = k
			}
		}
		old = as.m[oldest]
		delete(as.m, oldest)
	}
	if old != nil {
		as.old.Go(func() {
			<-old.done
			if old.st != nil {
				_ = old.st.Discard() // best effort: GC removes a leftover stage
			}
		})
	}
	a := &aheadStage{live: live, start: time.Now(), done: make(chan struct{})}
	as.m[set] = a
	// Not owned by a request: the work is bounded (one link per file of
	// the live set) and a commit of the set waits for it.
	go func() {
		defer close(a.done)
		// From the root's own disk, written by a verified Commit (and
		// kept decoded by the commit that just made it live).
		sv, err := s.manifest(set, live)
		if err != nil {
			return
		}
		m := sv.Manifest
		st, err := s.root.NewStage(set)
		if err != nil {
			s.log.Debug("stage ahead", "set", set, "err", err)
			return
		}
		a.st = st
		for _, e := range m.Entries {
			if st.Link(e.Path, e.SHA256) != nil {
				return // the Stage keeps the error; the commit ignores it
			}
		}
	}()
}

// gone reports whether a stage was built and is no longer usable (another
// process's GC or Recover removed it, or a Link failed): it is then made
// again rather than kept until aheadTTL. One still being built is not gone.
func (a *aheadStage) gone() bool {
	select {
	case <-a.done:
		return !a.st.Usable()
	default:
		return false
	}
}

// takeAhead returns the stage of set, if any, once it is built, and
// forgets it: the caller commits with it, then discards it.
func (s *Server) takeAhead(set string) *layout.Stage {
	as := &s.ahead
	as.mu.Lock()
	a := as.m[set]
	delete(as.m, set)
	as.mu.Unlock()
	if a == nil {
		return nil
	}
	<-a.done
	return a.st
}

// discardAhead discards every stage that no commit took, waiting for
// those still being built and for the discards of replaced ones, and
// stops staging: a commit racing Run's end
// stages nothing more. Run calls it when it ends (a stage left behind
// would only be removed by the next GC).
func (s *Server) discardAhead() error {
	as := &s.ahead
	as.mu.Lock()
	stages := as.m
	as.m = map[string]*aheadStage{}
	as.closed = true
	as.mu.Unlock()
	var errs []error
	for _, a := range stages {
		<-a.done
		if a.st != nil {
			errs = append(errs, a.st.Discard())
		}
	}
	as.old.Wait()
	return errors.Join(errs...)
}
