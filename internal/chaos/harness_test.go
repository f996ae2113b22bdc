package chaos

import (
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/proctest"
)

func TestMain(m *testing.M) { os.Exit(proctest.Main(m)) }

// Short names for the process harness shared with internal/e2e.
var (
	bin        = proctest.Bin
	freeAddr   = proctest.FreeAddr
	run        = proctest.Run
	runErr     = proctest.RunErr
	start      = proctest.Start
	waitHTTP   = proctest.WaitHTTP
	eventually = proctest.Eventually
	tail       = proctest.Tail
)

type proc = proctest.Proc

// client is the HTTP client of the tests: no connection reuse surprises
// across killed servers, no transparent gzip.
var client = &http.Client{
	Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: 64,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	},
	Timeout: 2 * time.Minute,
}

// response is what a client received.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error // transport or body read error (a broken connection)
}

// do sends a request and reads the whole body; hdr is name, value pairs.
func do(method, url string, body io.Reader, hdr ...string) response {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return response{err: err}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// get fetches url and fails the test on a transport error.
func get(t testing.TB, url string, hdr ...string) response {
	t.Helper()
	r := do(http.MethodGet, url, nil, hdr...)
	if r.err != nil {
		t.Fatalf("GET %s: %v", url, r.err)
	}
	return r
}
