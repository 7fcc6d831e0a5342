package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bodySizes are the fixed JSON documents the upstream serves at /json/<name>.
var bodySizes = []struct {
	name string
	size int
}{
	{"1k", 1 << 10},
	{"4k", 4 << 10},
	{"64k", 64 << 10},
	{"1m", 1 << 20},
}

// docSize is the size of the documents under /doc/, the PUT target.
const docSize = 1 << 10

// upstream is the legacy API the gateway fronts: fast, no ETags, no
// conditional request support.
type upstream struct {
	ln     net.Listener
	srv    *http.Server
	bodies map[string][]byte
	doc    []byte

	mu   sync.Mutex
	docs map[string][]byte

	requests atomic.Int64 // every request served, for upstream trips per client request
}

func startUpstream() (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	u := &upstream{
		ln:     ln,
		bodies: make(map[string][]byte),
		doc:    jsonBody(docSize),
		docs:   make(map[string][]byte),
	}
	for _, s := range bodySizes {
		u.bodies["/json/"+s.name] = jsonBody(s.size)
	}
	u.srv = &http.Server{
		Handler:           u,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	go func() {
		if err := u.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			progress("upstream stopped: %v", err)
		}
	}()
	return u, nil
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := u.srv.Shutdown(ctx); err != nil {
		u.srv.Close()
	}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.requests.Add(1)
	if body, ok := u.bodies[r.URL.Path]; ok {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		writeJSON(w, r, body)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/doc/") {
		u.serveDoc(w, r)
		return
	}
	http.NotFound(w, r)
}

// serveDoc is a read-write resource: GET returns the stored document (the
// initial one until written), PUT replaces it.
func (u *upstream) serveDoc(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		u.mu.Lock()
		body, ok := u.docs[r.URL.Path]
		u.mu.Unlock()
		if !ok {
			body = u.doc
		}
		writeJSON(w, r, body)
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		u.mu.Lock()
		u.docs[r.URL.Path] = body
		u.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func writeJSON(w http.ResponseWriter, r *http.Request, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// The json_ignore of the semantic GET rows: a top-level member of the
// documents below (as APIs put generated_at), and a member of every item
// too, which has the hasher match names all through the body.
const (
	jsonIgnore      = "/pad"
	jsonIgnoreItems = "/items/*/in_stock /pad"
)

// jsonBody returns a JSON document of exactly size bytes.
func jsonBody(size int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < size-128; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item-%d","price":%d.%02d,"in_stock":%t}`, i, i, i*37%1000, i%100, i%3 != 0)
	}
	b.WriteString(`],"pad":"`)
	for b.Len() < size-2 {
		b.WriteByte('x')
	}
	b.WriteString(`"}`)
	return b.Bytes()
}
