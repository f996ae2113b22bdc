//go:build !(linux || freebsd)

package origin

import (
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
)

// liveDirs reads the `current` link of each set on every request, through
// layout.Root.Live (live_unix.go keeps directory descriptors instead).
type liveDirs struct{ root *layout.Root }

func newLiveDirs(root *layout.Root) *liveDirs { return &liveDirs{root: root} }

func (l *liveDirs) live(set string) (setid.ID, error) { return l.root.Live(set) }

func (l *liveDirs) fresh(set string) (setid.ID, error) { return l.root.Live(set) }

func (l *liveDirs) revalidate(string) {}
