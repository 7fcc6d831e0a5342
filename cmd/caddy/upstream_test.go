package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// store is the upstream the replicas stand in front of: a counter that
// knows nothing of preconditions. GET returns the number, PUT stores the
// one it is sent; both pause as a store doing I/O would, which widens the
// window in which read-modify-writes collide.
//
// A request whose X-Hold-<method> header names a gate (X-Hold-PUT: a)
// waits at that gate until the test opens it. A held PUT commits only if its client is still there when
// the gate opens, as a careful store does; it records whether its request
// was cancelled.
type store struct {
	pause time.Duration
	mu    sync.Mutex
	n     int
	puts  atomic.Int64
	gates sync.Map // name → *gate
	url   string
}

// gate holds requests until opened.
type gate struct {
	arrived   chan struct{} // closed when the first request reaches the gate
	open      chan struct{}
	cancelled chan struct{} // closed when a held request's client went away
	once      sync.Once
	cOnce     sync.Once
}

func startStore(t *testing.T, pause time.Duration) *store {
	t.Helper()
	s := &store{pause: pause}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

// gate returns the gate named name, creating it.
func (s *store) gate(name string) *gate {
	g, _ := s.gates.LoadOrStore(name, &gate{arrived: make(chan struct{}), open: make(chan struct{}), cancelled: make(chan struct{})})
	return g.(*gate)
}

// hold waits at r's gate, if it names one; false means the client left.
func (s *store) hold(r *http.Request) bool {
	name := r.Header.Get("X-Hold-" + r.Method)
	if name == "" {
		return true
	}
	g := s.gate(name)
	g.once.Do(func() { close(g.arrived) })
	select {
	case <-g.open:
		return r.Context().Err() == nil
	case <-r.Context().Done():
		g.cOnce.Do(func() { close(g.cancelled) })
		return false
	}
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.mu.Lock()
		n := s.n
		s.mu.Unlock()
		time.Sleep(s.pause)
		if !s.hold(r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%d\n", n)
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			http.Error(w, "not a number", http.StatusBadRequest)
			return
		}
		time.Sleep(s.pause)
		if !s.hold(r) {
			return
		}
		s.mu.Lock()
		s.n = n
		s.mu.Unlock()
		s.puts.Add(1)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *store) value() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
