//go:build !linux

package layout

import "errors"

// syncfsSupported: no syncfs(2) here (FreeBSD's sync(2) need not wait for
// the writes), so objects are fsynced one by one, in parallel.
const syncfsSupported = false

func syncfs(string) error { return errors.New("syncfs not supported") }

// startWriteback does nothing here: Commit fsyncs each new object.
func startWriteback(f *rawFile) {}
