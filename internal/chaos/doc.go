// Package chaos holds the reliability and security suite: tests that build
// the real pkgpublish and pkgserve binaries, run a master and edges as
// separate processes on loopback, and attack them — kill -9 at every step of
// a publish, faulty upstreams, full disks, expired and forged signatures,
// hostile requests, and a soak under load — checking every byte a client
// received against the sha256 of the published sets' manifests.
//
// The README's "Reliability and security" section lists each case, what
// it proves and the test that proves it.
// The long soak runs from scripts/soak.sh (PKGCDN_SOAK_DURATION). The
// package has no non-test code.
package chaos
