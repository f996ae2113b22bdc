package httpserve

import (
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
)

// TestNewClosesTheListenerOnTLSError: Config.Listener is the Server's to
// close, also when New fails on the certificate.
func TestNewClosesTheListenerOnTLSError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{Listener: ln, Handler: http.NotFoundHandler(),
		TLSCertFile: filepath.Join(t.TempDir(), "missing.pem"), TLSKeyFile: filepath.Join(t.TempDir(), "missing.key")})
	if err == nil {
		t.Fatal("New with a missing certificate succeeded")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener after a failed New: Accept = %v, want net.ErrClosed", err)
	}
}
