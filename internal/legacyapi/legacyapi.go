// Package legacyapi is the demo upstream that etaggate stands in front of: a
// small in-memory JSON store of the kind found behind many gateways. It
// knows nothing of ETags or conditional requests and ignores If-Match,
// If-None-Match and their kin entirely, so two clients editing the same item
// silently overwrite each other unless the gateway prevents it.
//
// Routes:
//
//	GET    /             index: the items and what to try
//	GET    /items        every item
//	POST   /items        create an item with the next numeric id
//	GET    /items/{id}   one item
//	PUT    /items/{id}   create or replace an item; the body must be JSON
//	PATCH  /items/{id}   JSON merge patch (RFC 7396)
//	DELETE /items/{id}   remove an item
//
// HEAD is accepted wherever GET is. Responses are application/json with a
// Last-Modified of second precision; errors are {"error": ..., "status": ...}.
package legacyapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxBody is the largest request body the store accepts.
const MaxBody = 1 << 20

// Server is the legacy API. It is safe for concurrent use.
type Server struct {
	mux *http.ServeMux
	now func() time.Time

	mu       sync.Mutex
	items    map[string]item
	modified time.Time // last change to the collection, for / and /items
}

type item struct {
	doc      []byte // canonical JSON: compact, object keys sorted
	modified time.Time
}

// New returns a Server seeded with two items, /items/1 and /items/2.
func New() *Server {
	return newServer(time.Now)
}

func newServer(now func() time.Time) *Server {
	s := &Server{now: now, items: make(map[string]item)}
	t := s.stamp()
	s.modified = t
	for id, doc := range map[string]string{
		"1": `{"name":"widget","count":0}`,
		"2": `{"name":"gadget","count":3,"tags":["blue","small"]}`,
	} {
		canon, err := canonical([]byte(doc))
		if err != nil {
			panic(err) // the seed is a constant
		}
		s.items[id] = item{doc: canon, modified: t}
	}

	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/{$}", s.index)
	s.mux.HandleFunc("/items", s.collection)
	s.mux.HandleFunc("/items/{id}", s.item)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s: see GET /", r.URL.Path))
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w = headWriter{w}
	}
	s.mux.ServeHTTP(w, r)
}

// headWriter drops the body of a response to HEAD, keeping its headers
// (Content-Length included) exactly as for GET.
type headWriter struct{ http.ResponseWriter }

func (headWriter) Write(p []byte) (int, error) { return len(p), nil }

// stamp returns the current time at the precision of Last-Modified.
func (s *Server) stamp() time.Time {
	return s.now().UTC().Truncate(time.Second)
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	s.mu.Lock()
	ids := s.sortedIDs()
	modified := s.modified
	s.mu.Unlock()

	hrefs := make([]string, len(ids))
	for i, id := range ids {
		hrefs[i] = itemPath(id)
	}
	writeJSON(w, http.StatusOK, modified, map[string]any{
		"name":  "etaggate demo legacy API",
		"about": "An in-memory JSON store that knows nothing of ETags: it ignores If-Match and If-None-Match, so concurrent editors overwrite each other. Talk to it through the etaggate gateway.",
		"items": hrefs,
		"try": []string{
			"GET /items/1 through the gateway and note its ETag",
			"GET /items/1 again with If-None-Match: <that ETag> -> 304 Not Modified",
			"PUT /items/1 with If-Match: <that ETag> and a JSON body -> 200 with the new ETag",
			"repeat that PUT with the old ETag -> 412 Precondition Failed; the API never sees it",
			"PUT /items/1 with no If-Match -> 428 Precondition Required",
			"PATCH /items/1 with Content-Type: application/merge-patch+json",
		},
	})
}

func (s *Server) collection(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.list(w)
	case http.MethodPost:
		s.create(w, r)
	default:
		methodNotAllowed(w, r, "GET, HEAD, POST")
	}
}

type listEntry struct {
	ID    string          `json:"id"`
	Href  string          `json:"href"`
	Value json.RawMessage `json:"value"`
}

func (s *Server) list(w http.ResponseWriter) {
	s.mu.Lock()
	entries := make([]listEntry, 0, len(s.items))
	for _, id := range s.sortedIDs() {
		entries = append(entries, listEntry{ID: id, Href: itemPath(id), Value: s.items[id].doc})
	}
	modified := s.modified
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, modified, map[string]any{"items": entries})
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	doc, ok := readDoc(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	id := s.nextID()
	t := s.stamp()
	s.items[id] = item{doc: doc, modified: t}
	s.modified = t
	s.mu.Unlock()
	w.Header().Set("Location", itemPath(id))
	writeDoc(w, http.StatusCreated, doc, t)
}

func (s *Server) item(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		it, found := s.items[id]
		s.mu.Unlock()
		if !found {
			notFound(w, id)
			return
		}
		writeDoc(w, http.StatusOK, it.doc, it.modified)
	case http.MethodPut:
		s.put(w, r, id)
	case http.MethodPatch:
		s.patch(w, r, id)
	case http.MethodDelete:
		s.mu.Lock()
		_, found := s.items[id]
		if found {
			delete(s.items, id)
			s.modified = s.stamp()
		}
		s.mu.Unlock()
		if !found {
			notFound(w, id)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, r, "GET, HEAD, PUT, PATCH, DELETE")
	}
}

func (s *Server) put(w http.ResponseWriter, r *http.Request, id string) {
	doc, ok := readDoc(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	_, existed := s.items[id]
	t := s.stamp()
	s.items[id] = item{doc: doc, modified: t}
	s.modified = t
	s.mu.Unlock()
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
		w.Header().Set("Location", itemPath(id))
	}
	writeDoc(w, status, doc, t)
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request, id string) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/merge-patch+json" && mt != "application/json" {
		w.Header().Set("Accept-Patch", "application/merge-patch+json")
		writeError(w, http.StatusUnsupportedMediaType,
			fmt.Sprintf("PATCH needs Content-Type: application/merge-patch+json (RFC 7396), not %q", r.Header.Get("Content-Type")))
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	patch, err := decode(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "the merge patch is not JSON: "+err.Error())
		return
	}

	// The read, merge and write happen under one lock: the store itself
	// never loses a concurrent PATCH, only the clients' view can be stale.
	s.mu.Lock()
	it, found := s.items[id]
	if !found {
		s.mu.Unlock()
		notFound(w, id)
		return
	}
	target, err := decode(it.doc)
	if err != nil {
		s.mu.Unlock()
		writeError(w, http.StatusInternalServerError, "stored item is corrupt: "+err.Error())
		return
	}
	doc, err := encode(mergePatch(target, patch))
	if err != nil {
		s.mu.Unlock()
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	t := s.stamp()
	s.items[id] = item{doc: doc, modified: t}
	s.modified = t
	s.mu.Unlock()
	writeDoc(w, http.StatusOK, doc, t)
}

// mergePatch applies patch to target as RFC 7396 §2 describes.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = make(map[string]any, len(p))
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
		} else {
			t[k] = mergePatch(t[k], v)
		}
	}
	return t
}

// sortedIDs lists the ids, numeric ones first in numeric order. s.mu is held.
func (s *Server) sortedIDs() []string {
	ids := make([]string, 0, len(s.items))
	for id := range s.items {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		na, aNum := numeric(a)
		nb, bNum := numeric(b)
		switch {
		case aNum && bNum && na != nb:
			if na < nb {
				return -1
			}
			return 1
		case aNum && !bNum:
			return -1
		case !aNum && bNum:
			return 1
		}
		return strings.Compare(a, b)
	})
	return ids
}

// nextID returns one more than the largest numeric id. s.mu is held.
func (s *Server) nextID() string {
	var max uint64
	for id := range s.items {
		if n, ok := numeric(id); ok && n > max {
			max = n
		}
	}
	return strconv.FormatUint(max+1, 10)
}

func numeric(id string) (uint64, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	return n, err == nil
}

func itemPath(id string) string {
	return "/items/" + url.PathEscape(id)
}

// readDoc reads a request body that must be one JSON value and returns it in
// canonical form, or answers the request with an error.
func readDoc(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, ok := readBody(w, r)
	if !ok {
		return nil, false
	}
	doc, err := canonical(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "the body must be a JSON document: "+err.Error())
		return nil, false
	}
	return doc, true
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBody))
		} else {
			writeError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

// canonical re-encodes one JSON value compactly with object keys sorted, so
// equal documents are stored as equal bytes. Numbers keep their text.
func canonical(b []byte) ([]byte, error) {
	v, err := decode(b)
	if err != nil {
		return nil, err
	}
	return encode(v)
}

func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			return nil, errors.New("empty body")
		}
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("unexpected data after the JSON value")
	}
	return v, nil
}

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeDoc sends a stored document, newline-terminated for terminals.
func writeDoc(w http.ResponseWriter, status int, doc []byte, modified time.Time) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(doc)+1))
	if !modified.IsZero() {
		h.Set("Last-Modified", modified.Format(http.TimeFormat))
	}
	w.WriteHeader(status)
	_, _ = w.Write(doc)
	_, _ = w.Write([]byte("\n"))
}

func writeJSON(w http.ResponseWriter, status int, modified time.Time, v any) {
	doc, err := encode(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeDoc(w, status, doc, modified)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	doc, _ := encode(map[string]any{"error": msg, "status": status})
	writeDoc(w, status, doc, time.Time{})
}

func notFound(w http.ResponseWriter, id string) {
	writeError(w, http.StatusNotFound, fmt.Sprintf("no item %q", id))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed string) {
	w.Header().Set("Allow", allowed)
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed here; use %s", r.Method, allowed))
}

// allow answers 405 unless r's method is m (HEAD counting as GET).
func allow(w http.ResponseWriter, r *http.Request, m string) bool {
	if r.Method == m || (m == http.MethodGet && r.Method == http.MethodHead) {
		return true
	}
	methodNotAllowed(w, r, "GET, HEAD")
	return false
}
