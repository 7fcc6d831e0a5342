package testutil

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

// CounterStore is an upstream that knows nothing of preconditions: GET
// returns a number, PUT stores the one it is sent. Both pause as a store
// doing I/O would, which widens the window in which read-modify-writes
// collide.
//
// A request whose X-Hold-<method> header names a gate (X-Hold-PUT: a)
// waits at that gate until the test opens it. A held PUT commits only if
// its client is still there when the gate opens, as a careful store does.
type CounterStore struct {
	URL   string
	pause time.Duration
	mu    sync.Mutex
	n     int
	gets  atomic.Int64
	puts  atomic.Int64
	gates sync.Map // name → *Gate
}

// Gate holds requests until opened.
type Gate struct {
	// Arrived is closed when the first request reaches the gate.
	Arrived chan struct{}
	// Cancelled is closed when a held request's client went away.
	Cancelled chan struct{}
	open      chan struct{}
	arrive    sync.Once
	cancel    sync.Once
	opening   sync.Once
}

// StartCounterStore serves a CounterStore on 127.0.0.1 until the test ends.
func StartCounterStore(t testing.TB, pause time.Duration) *CounterStore {
	t.Helper()
	s := &CounterStore{pause: pause}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Gate returns the gate named name, creating it.
func (s *CounterStore) Gate(name string) *Gate {
	g, _ := s.gates.LoadOrStore(name, &Gate{Arrived: make(chan struct{}), Cancelled: make(chan struct{}), open: make(chan struct{})})
	return g.(*Gate)
}

// Open lets the requests held at g go on.
func (g *Gate) Open() { g.opening.Do(func() { close(g.open) }) }

// hold waits at r's gate, if it names one; false means the client left.
func (s *CounterStore) hold(r *http.Request) bool {
	name := r.Header.Get("X-Hold-" + r.Method)
	if name == "" {
		return true
	}
	g := s.Gate(name)
	g.arrive.Do(func() { close(g.Arrived) })
	select {
	case <-g.open:
		return r.Context().Err() == nil
	case <-r.Context().Done():
		g.cancel.Do(func() { close(g.Cancelled) })
		return false
	}
}

func (s *CounterStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.gets.Add(1)
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

// Value is the stored number.
func (s *CounterStore) Value() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Gets counts the GETs received; Puts the PUTs committed.
func (s *CounterStore) Gets() int64 { return s.gets.Load() }

// Puts counts the PUTs committed.
func (s *CounterStore) Puts() int64 { return s.puts.Load() }
