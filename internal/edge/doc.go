// Package edge is the mirror's http.Handler: a pull-through cache in front of
// one or more upstreams (a pkgcdn master, another edge, or any plain HTTP
// package server) that streams each file to every waiting client while the
// single upstream fetch is still arriving.
//
// In manifest-aware mode (Config.Verifier set) the edge follows the
// upstream's signed SETS file, holds the verified manifest of each live set,
// maps /<set>/<path> to a sha256 and fetches objects by their immutable URL;
// an unknown path is a 404 without an upstream round trip, and every byte
// kept is checked against the manifest. In plain mode it caches by URL path
// and decides freshness by a set-ID URL (Config.SetIDURL) or by RFC 9111.
//
// Both modes serve the master's URL space (package route), so edges chain.
package edge
