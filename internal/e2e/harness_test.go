package e2e

import (
	"io"
	"net/http"
	"os"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/proctest"
)

func TestMain(m *testing.M) { os.Exit(proctest.Main(m)) }

// Short names for the process harness shared with internal/chaos.
var (
	bin      = proctest.Bin
	freeAddr = proctest.FreeAddr
	run      = proctest.Run
	start    = proctest.Start
	waitHTTP = proctest.WaitHTTP
)

type proc = proctest.Proc

// get fetches url and returns status, headers and body.
func get(t testing.TB, url string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, b
}
