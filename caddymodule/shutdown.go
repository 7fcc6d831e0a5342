package caddymodule

import (
	"net/http"
	"sync"
)

// shutdownCloser closes something when a server that served one of its
// streams shuts down: a graceful shutdown waits for active requests, and
// a stream never finishes by itself, while Caddy only calls Cleanup after
// the shutdown.
type shutdownCloser struct {
	close func() error
	mu    sync.Mutex
	seen  map[*http.Server]struct{}
}

func newShutdownCloser(close func() error) *shutdownCloser {
	return &shutdownCloser{close: close, seen: make(map[*http.Server]struct{})}
}

// watch registers the close with the server serving r, once per server.
func (s *shutdownCloser) watch(r *http.Request) {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, done := s.seen[srv]; done {
		return
	}
	s.seen[srv] = struct{}{}
	srv.RegisterOnShutdown(func() { _ = s.close() })
}
