package cmdline

import (
	"errors"
	"io/fs"
	"slices"
	"testing"
)

func TestEnvVars(t *testing.T) {
	for flag, want := range map[string]string{"root": "PKGCDN_ROOT", "token-file": "PKGCDN_TOKEN_FILE", "max-object-size": "PKGCDN_MAX_OBJECT_SIZE"} {
		if got := EnvVars(flag); !slices.Equal(got, []string{want}) {
			t.Errorf("EnvVars(%q) = %q, want [%s]", flag, got, want)
		}
	}
}

func TestUsageError(t *testing.T) {
	err := Usagef("--keep %d: %w", -1, fs.ErrInvalid)
	var ue UsageError
	if !errors.As(err, &ue) || !errors.Is(err, fs.ErrInvalid) || err.Error() != "--keep -1: invalid argument" {
		t.Errorf("Usagef = %v (%T), want a UsageError wrapping fs.ErrInvalid", err, err)
	}
}
