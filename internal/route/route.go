// Package route is the URL space that the master and the edge share: it
// parses a request path into a typed target, and builds upstream URLs.
//
//	/<set>/<path>                        a file of the live set
//	/.pkgcdn/sets, /.pkgcdn/sets.minisig the set-ID file and its signature
//	/.pkgcdn/manifest/<set>/<id>[.minisig]
//	/.pkgcdn/objects/sha256/<hash>       one file by content
//	/.pkgcdn/publish/<op>                upload API (master only)
//	/.pkgcdn/notify                      push hint from a master (edge only)
//
// Leading slashes are collapsed (mirror lists append a path to a URL that
// ends in "/"). Everything else must be clean: a path that is not valid
// under relpath.Validate never reaches a filepath.Join.
package route

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// Kind is what a request path names.
type Kind int

// The kinds of target.
const (
	SetFile     Kind = iota + 1 // a file of a set: Set, Path
	Sets                        // the SETS file
	SetsSig                     // SETS.minisig
	Manifest                    // a set's manifest: Set, ID
	ManifestSig                 // its .minisig: Set, ID
	Object                      // an object by hash: Hash
	Publish                     // upload API: Op is the rest after /.pkgcdn/publish/
	Notify                      // push hint
	Root                        // "/" (the master's mirror list)
)

// Prefix is the first segment of pkgcdn's own URLs.
const Prefix = "/" + relpath.Reserved + "/"

// MaxPathLen bounds a request path.
const MaxPathLen = 4096

// ErrNotFound means the path names nothing pkgcdn serves: a 404.
var ErrNotFound = errors.New("not found")

// Target is a parsed request path.
type Target struct {
	Kind Kind
	Set  string        // SetFile, Manifest, ManifestSig
	Path string        // SetFile: relative path inside the set
	ID   setid.ID      // Manifest, ManifestSig
	Hash digest.SHA256 // Object
	Op   string        // Publish
}

// Parse parses the decoded URL path p. isSet reports whether a name is a
// set served here; the longest leading run of segments that is a set wins.
// Every error wraps ErrNotFound.
func Parse(p string, isSet func(name string) bool) (Target, error) {
	if len(p) > MaxPathLen {
		return Target{}, fmt.Errorf("%w: path over %d bytes", ErrNotFound, MaxPathLen)
	}
	if !strings.HasPrefix(p, "/") {
		return Target{}, fmt.Errorf("%w: path not absolute", ErrNotFound)
	}
	p = p[len(p)-len(strings.TrimLeft(p, "/"))-1:] // one leading slash, no copy
	if p == "/" {
		return Target{Kind: Root}, nil
	}
	if rest, ok := strings.CutPrefix(p, Prefix); ok {
		return parseInternal(rest)
	}
	rest := p[1:]
	// Try the longest set name first: "a/b" beats "a" when both are sets.
	// Candidates are the prefixes of rest that end before a "/"; those over
	// MaxNameLen are skipped without a look, so a path of 2,000 segments
	// costs a scan, not 2,000 joins and lookups.
	for end := len(rest); ; {
		end = strings.LastIndexByte(rest[:end], '/')
		if end <= 0 {
			break
		}
		name := rest[:end]
		// isSet first: a map lookup is cheaper than validating a name
		// that is no set anyway; a name isSet accepts is still validated.
		if len(name) > setid.MaxNameLen || !isSet(name) || setid.ValidateName(name) != nil {
			continue
		}
		rel := rest[end+1:]
		if err := relpath.Validate(rel); err != nil {
			return Target{}, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return Target{Kind: SetFile, Set: name, Path: rel}, nil
	}
	return Target{}, fmt.Errorf("%w: no such set", ErrNotFound)
}

// ParseURL parses a request URL like Parse, after CleanURL.
func ParseURL(u *url.URL, isSet func(name string) bool) (Target, error) {
	p, err := CleanURL(u)
	if err != nil {
		return Target{}, err
	}
	return Parse(p, isSet)
}

// CleanURL returns the decoded path of u with "." segments dropped (apt asks
// for a flat repository's "./Packages"; "." names nothing, unlike "..", which
// Parse refuses). It first refuses a path whose escaped form hides a
// separator or a NUL ("%2f", "%5c", "%00"): decoded, "a%2fb" would name
// "a/b", a different file than the client asked for. Errors wrap ErrNotFound.
func CleanURL(u *url.URL) (string, error) {
	if strings.ContainsAny(u.Path, "\\\x00") {
		return "", fmt.Errorf("%w: backslash or NUL in path", ErrNotFound)
	}
	if u.RawPath != "" && strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") {
		return "", fmt.Errorf("%w: encoded separator in path", ErrNotFound)
	}
	return DropDotSegments(u.Path), nil
}

// DropDotSegments removes the "." segments of a slash-separated path.
func DropDotSegments(p string) string {
	if !strings.Contains(p, "/.") {
		return p
	}
	for strings.Contains(p, "/./") {
		p = strings.ReplaceAll(p, "/./", "/")
	}
	if strings.HasSuffix(p, "/.") {
		p = p[:len(p)-1]
	}
	return p
}

func parseInternal(rest string) (Target, error) {
	switch rest {
	case "sets":
		return Target{Kind: Sets}, nil
	case "sets.minisig":
		return Target{Kind: SetsSig}, nil
	case "notify":
		return Target{Kind: Notify}, nil
	}
	if op, ok := strings.CutPrefix(rest, "publish/"); ok && op != "" {
		return Target{Kind: Publish, Op: op}, nil
	}
	if h, ok := strings.CutPrefix(rest, "objects/sha256/"); ok {
		d, err := digest.Parse(h)
		if err != nil {
			return Target{}, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return Target{Kind: Object, Hash: d}, nil
	}
	if m, ok := strings.CutPrefix(rest, "manifest/"); ok {
		kind := Manifest
		if s, ok := strings.CutSuffix(m, ".minisig"); ok {
			m, kind = s, ManifestSig
		}
		i := strings.LastIndexByte(m, '/')
		if i < 0 {
			return Target{}, fmt.Errorf("%w: manifest path has no set ID", ErrNotFound)
		}
		set, idText := m[:i], m[i+1:]
		if err := setid.ValidateName(set); err != nil {
			return Target{}, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		id, err := setid.Parse(idText)
		if err != nil {
			return Target{}, fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		return Target{Kind: kind, Set: set, ID: id}, nil
	}
	return Target{}, fmt.Errorf("%w: unknown %s path", ErrNotFound, Prefix)
}

// SetsURL returns the URL of base's SETS file (sig: its signature).
func SetsURL(base *url.URL, sig bool) string {
	if sig {
		return join(base, Prefix+"sets.minisig")
	}
	return join(base, Prefix+"sets")
}

// ManifestURL returns the URL of a set's manifest (sig: its signature).
func ManifestURL(base *url.URL, set string, id setid.ID, sig bool) string {
	p := Prefix + "manifest/" + set + "/" + id.String()
	if sig {
		p += ".minisig"
	}
	return join(base, p)
}

// ObjectURL returns the immutable URL of an object.
func ObjectURL(base *url.URL, d digest.SHA256) string {
	return join(base, Prefix+"objects/sha256/"+d.String())
}

// FileURL returns the URL of a set-relative path under base; url.URL
// escapes what needs escaping (spaces, "?", "#") and leaves "~" and "$".
func FileURL(base *url.URL, set, rel string) string { return join(base, "/"+set+"/"+rel) }

// PublishURL returns the URL of an upload API operation.
func PublishURL(base *url.URL, op string) string { return join(base, Prefix+"publish/"+op) }

// join appends an absolute path to base's path (base may end in "/").
func join(base *url.URL, p string) string {
	u := *base
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimRight(u.Path, "/") + p
	u.RawPath = ""
	return u.String()
}
