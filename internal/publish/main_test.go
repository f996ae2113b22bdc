package publish

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
)

// TestMain runs the test binary as the child of a kill-at-any-step test
// when PKGCDN_TEST_KILL_AT is set, and as the test suite otherwise.
func TestMain(m *testing.M) {
	if s := os.Getenv("PKGCDN_TEST_KILL_AT"); s != "" {
		at, err := strconv.Atoi(s)
		if err == nil {
			err = killChild(at)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if src := os.Getenv("PKGCDN_TEST_SCAN"); src != "" {
		// Child of TestScanRefusesUnreadableFile, run as an unprivileged user.
		_, err := Scan(context.Background(), src)
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}
