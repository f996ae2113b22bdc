package origin

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/route"
)

// FuzzServePath sends arbitrary request targets to the handler: it never
// answers 5xx, never serves the secrets planted inside and outside the
// root, and a 200 for a set path is always one of the published files.
func FuzzServePath(f *testing.F) {
	fx := newFixture(f, nil)
	files := map[string]string{"All/a.pkg": "published-a", "meta.conf": "published-meta"}
	fx.publish(set, files)
	const secret = "FUZZ-SECRET"
	for _, p := range []string{filepath.Join(fx.dir, "secret"), filepath.Join(fx.root.Dir, "secret"),
		filepath.Join(fx.root.Dir, "staging", "secret")} {
		if err := os.WriteFile(p, []byte(secret), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	for _, s := range []string{"/" + set + "/All/a.pkg", "/../secret", "/" + set + "/%2e%2e/%2e%2e/secret",
		"/.pkgcdn/sets", "/staging/secret", "//" + set + "/meta.conf", "/" + set + "/All%2fa.pkg", "/./" + set + "/meta.conf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return
		}
		rec := httptest.NewRecorder()
		req := &http.Request{Method: "GET", URL: u, RequestURI: target, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		fx.srv.ServeHTTP(rec, req.WithContext(t.Context()))
		body := rec.Body.String()
		if rec.Code >= 500 {
			t.Fatalf("GET %q = %d %q", target, rec.Code, body)
		}
		if strings.Contains(body, secret) {
			t.Fatalf("GET %q served a secret", target)
		}
		if rec.Code == 200 && rec.Header().Get(hdrSet) != "" {
			// "." segments name nothing and are dropped (route.CleanURL).
			rel := strings.TrimPrefix(strings.TrimLeft(route.DropDotSegments(u.Path), "/"), set+"/")
			if want, ok := files[rel]; !ok || body != want {
				t.Fatalf("GET %q = 200 %q, not a published file", target, body)
			}
		}
	})
}
