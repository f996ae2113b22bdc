// Package edge is the mirror's http.Handler: a pull-through cache in front of
// one or more upstreams (a pkgcdn master, another edge, or any plain HTTP
// package server) that streams each file to every waiting client while the
// single upstream fetch is still arriving.
//
// # Manifest-aware mode (Config.Verifier set)
//
// The edge follows the upstream's signed SETS file (long-poll on
// /.pkgcdn/sets?wait=, every Config.Poll, and on a push notice to
// /.pkgcdn/notify, which is only a hint), verifies each newer set's manifest
// (trusted key, trusted comment, not expired, sha256 equal to the SETS entry,
// ID strictly newer) and switches by swapping one immutable snapshot: every
// request is answered from one set. /<set>/<path> maps to a sha256 through the
// live manifest (then, for grace, the previous two); an unknown path is a 404
// without an upstream round trip; objects are fetched by their immutable
// /.pkgcdn/objects/sha256/ URL and checked against the manifest before they
// are kept or released complete. The edge serves the master's URL space, so
// edges chain.
//
// Small objects: one of at most 16 KiB is kept in memory once served (an
// mmap'ed arena of Config.MemoryCacheBytes, outside the Go heap, checked
// against its sha256 when put) and a hit on it is header and body in one
// write, with no file opened. A fill of at most 64 KiB, held back whole
// until verified anyway, is sent the same way once verified.
//
// # Plain mode
//
// Any HTTP upstream, cached by path. With Config.SetIDURL an entry is fresh
// until that file changes, then revalidated on its next hit (304 keeps it,
// 200 replaces it); without, RFC 9111 freshness. Upstream 404s are
// remembered briefly (pkg asks for absent fallback names on every update).
//
// # Status codes
//
// 404 means "not in this set" and nothing else: an upstream that cannot be
// reached gives 502 (504 on a timeout), a set not verified yet 503, so pkg
// fails over to its next mirror. A fill that fails after the headers went out
// breaks the connection: never a short 200. (A small one sent whole fails
// before its headers: a 502.)
//
// # State on disk (Config.StateDir)
//
//	SETS, SETS.minisig              the last verified upstream SETS
//	manifests/<set>/<id>[.minisig]  verified manifests: live and up to two older
//	plain-generation                plain mode: set-ID generation and body hash
//	plain-versions                  plain mode: cache key version of replaced paths
//
// Everything is written through internal/atomicfile and verified again when
// read back, so a restart serves at once, without its upstream.
package edge
