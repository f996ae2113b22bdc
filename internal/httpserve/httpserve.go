// Package httpserve runs pkgcdn's production HTTP servers (the origin's and
// the edge's public listener, and the admin listener): timeouts suited to
// slow clients downloading big files, graceful shutdown, optional TLS with
// HTTP/2, a Combined Log Format access log, per-request observation for
// metrics, and the admin endpoints /healthz and /metrics.
//
// Timeouts. Slowloris is bounded by ReadHeaderTimeout (a client must send its
// whole request header within it) and idle keep-alive connections by
// IdleTimeout. There is deliberately no global http.Server.WriteTimeout: a
// client at pkg's minimum of 2 KB/s needs a day and a half for a 256 MiB
// package, and any fixed WriteTimeout either kills it or is so large that it
// bounds nothing. Instead every response gets a progress-based write
// deadline: each write (and each chunk of a sendfile) must complete within
// StallTimeout, so a stalled reader is cut off after StallTimeout while a
// slow but moving one can take as long as it needs. Sendfile chunks are
// StallChunk bytes, which makes the minimum sustained rate
// StallChunk/StallTimeout (128 KiB / 60 s ≈ 2.2 KB/s by default).
//
// Small responses. WriteWhole sends a whole response of up to
// MaxWholeBytes (status line, header and body) in one write(2) on a
// plain-HTTP Server's connections, where net/http would make two.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultStallTimeout      = 60 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// Config configures a Server.
type Config struct {
	// Addr is the TCP address to listen on ("127.0.0.1:8080"). Ignored when
	// Listener is set.
	Addr string
	// Listener, if set, is used instead of listening on Addr (tests, socket
	// activation). The Server closes it.
	Listener net.Listener
	// Handler serves requests. It is wrapped by Instrument with AccessLog,
	// Observe and StallTimeout.
	Handler http.Handler
	// TLSCertFile and TLSKeyFile enable TLS (and with it HTTP/2) when both
	// are set. If empty, plain HTTP/1.1.
	TLSCertFile, TLSKeyFile string
	// ReadHeaderTimeout bounds reading a request header. If zero, 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection. If zero, 120s.
	IdleTimeout time.Duration
	// StallTimeout is the progress deadline of every write of a response
	// (see the package doc). If zero, 60s.
	StallTimeout time.Duration
	// DrainTimeout bounds graceful shutdown: in-flight requests get this
	// long to finish after the context is cancelled, then connections are
	// closed. If zero, 30s.
	DrainTimeout time.Duration
	// MaxHeaderBytes bounds a request header. If zero, 64 KiB.
	MaxHeaderBytes int
	// AccessLog, if not nil, gets one Combined Log Format line per request.
	AccessLog *AccessLog
	// Observe, if not nil, is called after every request (for metrics).
	Observe ObserveFunc
	// OnShutdown, if not nil, is called when shutdown starts, so that the
	// application can release requests that would otherwise hold the drain
	// (long polls).
	OnShutdown func()
	// Logger logs lifecycle events. If nil, logs are discarded.
	Logger *slog.Logger
}

// Server is one HTTP listener. Create it with New, run it with Serve.
type Server struct {
	cfg  Config
	ln   net.Listener
	srv  *http.Server
	tls  bool // srv.TLSConfig is set (read it not: ServeTLS replaces it)
	cert atomic.Pointer[tls.Certificate]
	log  *slog.Logger
}

// New checks cfg, loads the TLS key pair if any, and binds the listener, so
// that Addr is known (and a port clash is reported) before Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("httpserve: no handler")
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("httpserve: TLS needs both a certificate and a key")
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           Instrument(cfg.Handler, cfg.AccessLog, cfg.Observe, cfg.StallTimeout),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext:       ConnContext,
	}
	if cfg.OnShutdown != nil {
		srv.RegisterOnShutdown(cfg.OnShutdown)
	}
	s := &Server{cfg: cfg, srv: srv, log: log}
	if cfg.TLSCertFile != "" {
		if err := s.ReloadTLS(); err != nil {
			if cfg.Listener != nil {
				_ = cfg.Listener.Close() // ours to close, as documented; the TLS error is the one to report
			}
			return nil, err
		}
		// NextProtos h2 first: net/http serves HTTP/2 over TLS by itself.
		// The certificate is looked up per handshake, so ReloadTLS takes
		// effect for new connections without a restart.
		srv.TLSConfig = &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.cert.Load(), nil },
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{"h2", "http/1.1"},
		}
		s.tls = true
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
	}
	s.ln = ln
	return s, nil
}

// ReloadTLS loads the certificate and key files again (call it on SIGHUP
// after a renewal); connections made afterwards use them. On error the
// old pair stays in use. Without TLS it does nothing.
func (s *Server) ReloadTLS() error {
	if s.cfg.TLSCertFile == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
	if err != nil {
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	s.cert.Store(&cert)
	return nil
}

// Addr returns the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// TLS reports whether the server speaks TLS.
func (s *Server) TLS() bool { return s.tls }

// Serve serves until ctx is cancelled, then shuts down gracefully: it stops
// accepting, lets in-flight requests finish for up to DrainTimeout, and then
// closes every connection. It returns nil after a shutdown caused by ctx, or
// the error that stopped the listener.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		if s.tls {
			errc <- s.srv.ServeTLS(s.ln, "", "")
		} else {
			errc <- s.srv.Serve(OneWriteListener(s.ln))
		}
	}()
	s.log.Info("listening", "addr", s.ln.Addr().String(), "tls", s.TLS())
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "addr", s.ln.Addr().String(), "drain", s.cfg.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.DrainTimeout)
	defer cancel()
	err := s.srv.Shutdown(dctx)
	if err != nil {
		// The drain timed out: cut the remaining connections.
		err = errors.Join(fmt.Errorf("drain %s: %w", s.ln.Addr(), err), s.srv.Close())
	}
	<-errc // Serve returns http.ErrServerClosed once Shutdown started.
	return err
}
