// Package e2e holds end-to-end tests that build the real pkgpublish and
// pkgserve binaries and run them as separate processes on loopback, driven by
// real clients (curl, wget, apt-get) and by Go clients emulating FreeBSD pkg.
// It has no non-test code.
package e2e
