// Package cmdline is what pkgpublish and pkgserve share in reading their
// command lines: the environment variable behind each flag, and the error
// of a mistake in flags or arguments, on which both exit with code 2.
package cmdline

import (
	"fmt"
	"strings"
)

// EnvVars returns the environment variable that may set a flag:
// PKGCDN_<FLAG>, upper case, dashes as underscores ("token-file" is
// PKGCDN_TOKEN_FILE).
func EnvVars(flag string) []string {
	return []string{"PKGCDN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// UsageError is a mistake in flags or arguments: the commands exit 2.
type UsageError struct{ Err error }

// Error returns the mistake's message.
func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with the formatted message.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }
