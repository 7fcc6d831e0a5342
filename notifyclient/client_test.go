package notifyclient

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter hands each complete line written to it to a channel, so a
// test can wait for output while Run is still writing.
type lineWriter struct {
	mu    sync.Mutex
	part  string
	lines chan string
}

func newLineWriter() *lineWriter { return &lineWriter{lines: make(chan string, 1000)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.part += string(p)
	for {
		i := strings.IndexByte(w.part, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.lines <- w.part[:i]
		w.part = w.part[i+1:]
	}
}

// next waits for the next line.
func (w *lineWriter) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-w.lines:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
		return ""
	}
}

// waitFor reads lines until one contains s.
func (w *lineWriter) waitFor(t *testing.T, s string) string {
	t.Helper()
	for {
		if l := w.next(t); strings.Contains(l, s) {
			return l
		}
	}
}

type run struct {
	out, err *lineWriter
	cancel   context.CancelFunc
	done     chan error
}

// start runs the client against url in the background; the test's end
// stops it.
func start(t *testing.T, o Options) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{out: newLineWriter(), err: newLineWriter(), cancel: cancel, done: make(chan error, 1)}
	o.Stdout, o.Stderr = r.out, r.err
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 40*time.Millisecond
	}
	go func() { r.done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context ending")
		}
	})
	return r
}

// wait returns Run's result.
func (r *run) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
		return nil
	}
}

// sseServer serves each connection with the next script; a script writes
// raw stream text and may check the request.
func sseServer(t *testing.T, scripts ...func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, chan *http.Request) {
	t.Helper()
	reqs := make(chan *http.Request, 100)
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- r
		mu.Lock()
		i := n
		n++
		mu.Unlock()
		if i >= len(scripts) {
			<-r.Context().Done() // no more scripts: hold the connection
			return
		}
		scripts[i](w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, reqs
}

func stream(w http.ResponseWriter, text ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	for _, s := range text {
		fmt.Fprint(w, s)
		w.(http.Flusher).Flush()
	}
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"type":"about:blank","title":%q,"status":%d,"detail":%q}`, http.StatusText(status), status, detail)
}

const twoFiles = `id: 7
data: [{"type":"child_file_added","path":"a.txt","spine":["1","2"],"stream_name":null},{"type":"child_data_written","path":"sub/b c.txt","spine":["1","3","4"],"stream_name":null}]

`

// TestPrintsAndReconnects follows a stream that delivers two
// notifications, an overflow and then ends: one line per notification on
// stdout, the overflow and the reconnection on stderr, and the next
// request carries the last id as Last-Event-ID.
func TestPrintsAndReconnects(t *testing.T) {
	srv, reqs := sseServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			stream(w, ": watching\n\n", twoFiles, "event: overflow\nid: 9\ndata: {\"reason\":\"subscriber_queue\"}\n\n")
		},
		func(w http.ResponseWriter, r *http.Request) {
			stream(w, ": watching\n\n", "id: 10\ndata: [{\"type\":\"child_file_removed\",\"path\":\"a.txt\",\"spine\":[\"1\",\"2\"],\"stream_name\":null}]\n\n")
			<-r.Context().Done()
		})
	r := start(t, Options{URL: srv.URL, Path: "/my/directory", Recursive: true})
	first := <-reqs
	if got, want := first.URL.RequestURI(), "/v1/files/%2Fmy%2Fdirectory/notify?recursive=true"; got != want {
		t.Errorf("request URI %s, want %s", got, want)
	}
	if first.Header.Get("Last-Event-ID") != "" || first.Header.Get("Accept") != "text/event-stream" {
		t.Errorf("first request headers %v", first.Header)
	}
	for _, want := range []string{"child_file_added\ta.txt", "child_data_written\tsub/b c.txt", "child_file_removed\ta.txt"} {
		if got := r.out.next(t); got != want {
			t.Fatalf("stdout line %q, want %q", got, want)
		}
	}
	if second := <-reqs; second.Header.Get("Last-Event-ID") != "9" {
		t.Errorf("reconnection's Last-Event-ID %q, want 9 (the overflow's id)", second.Header.Get("Last-Event-ID"))
	}
	r.err.waitFor(t, "overflow (reason subscriber_queue)")
	r.err.waitFor(t, "the stream ended; reconnecting in 10ms with Last-Event-ID 9")
	r.err.waitFor(t, "reconnected to "+srv.URL)
	r.cancel()
	if err := r.wait(t); err != nil {
		t.Errorf("Run after cancel: %v, want nil", err)
	}
}

// TestJSONLines prints each notification object as received, compact, one
// per line.
func TestJSONLines(t *testing.T) {
	srv, _ := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		stream(w, ": watching\n\n", "id: 1\ndata: [{\"type\": \"child_dir_added\",\n", "data:  \"path\": \"d\", \"spine\": [\"1\",\"5\"], \"stream_name\": null}]\n\n")
		<-r.Context().Done()
	})
	r := start(t, Options{URL: srv.URL, ID: "1", JSON: true})
	if got, want := r.out.next(t), `{"type":"child_dir_added","path":"d","spine":["1","5"],"stream_name":null}`; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
}

// TestClientErrorExits gives up at a 4xx with the problem's detail, after
// one request.
func TestClientErrorExits(t *testing.T) {
	srv, reqs := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		problem(w, http.StatusNotFound, "no directory /nope below the root")
	})
	r := start(t, Options{URL: srv.URL, Path: "/nope"})
	err := r.wait(t)
	if err == nil || !strings.Contains(err.Error(), "404 Not Found: no directory /nope below the root") || IsUsage(err) {
		t.Fatalf("Run: %v, want the 404's detail", err)
	}
	if len(reqs) != 1 {
		t.Errorf("%d requests, want 1", len(reqs))
	}
}

// TestServerErrorRetries retries a 503 and a 500, then streams.
func TestServerErrorRetries(t *testing.T) {
	srv, _ := sseServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "0")
			problem(w, http.StatusServiceUnavailable, "10000 streams are open; retry later")
		},
		func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) },
		func(w http.ResponseWriter, r *http.Request) {
			stream(w, ": watching\n\n", twoFiles)
			<-r.Context().Done()
		})
	r := start(t, Options{URL: srv.URL, Path: "/"})
	if got := r.out.next(t); got != "child_file_added\ta.txt" {
		t.Errorf("stdout %q", got)
	}
	r.err.waitFor(t, "503 Service Unavailable: 10000 streams are open; retry later; reconnecting in 10ms")
	r.err.waitFor(t, "500 Internal Server Error: boom; reconnecting in 20ms")
}

// TestBackoff doubles the wait up to MaxBackoff while nothing answers, and
// starts again from MinBackoff after a stream delivered.
func TestBackoff(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every attempt is refused
	r := start(t, Options{URL: "http://" + addr, Path: "/"})
	for _, want := range []string{"10ms", "20ms", "40ms", "40ms"} {
		if l := r.err.next(t); !strings.Contains(l, "connection refused; reconnecting in "+want) {
			t.Fatalf("stderr %q, want a refused connection and a wait of %s", l, want)
		}
	}

	srv, _ := sseServer(t,
		func(w http.ResponseWriter, r *http.Request) { stream(w, twoFiles) },
		func(w http.ResponseWriter, r *http.Request) { stream(w, twoFiles) },
	)
	r = start(t, Options{URL: srv.URL, Path: "/"})
	for range 2 {
		if l := r.err.waitFor(t, "the stream ended"); !strings.Contains(l, "reconnecting in 10ms") {
			t.Fatalf("stderr %q: a stream that delivered must reconnect after MinBackoff", l)
		}
	}
}

// TestSelfRemovedStops ends without error once the watched directory is
// removed.
func TestSelfRemovedStops(t *testing.T) {
	srv, _ := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		stream(w, ": watching\n\n", "id: 3\ndata: [{\"type\":\"self_removed\",\"path\":\"\",\"spine\":[\"1\"],\"stream_name\":null}]\n\n")
	})
	r := start(t, Options{URL: srv.URL, Path: "/gone"})
	if got := r.out.next(t); got != "self_removed\t" {
		t.Errorf("stdout %q", got)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run: %v, want nil", err)
	}
	r.err.waitFor(t, "the watched directory was removed; stopping")
}

// TestNotAStream refuses a 200 that is not an event stream.
func TestNotAStream(t *testing.T) {
	srv, _ := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html>")
	})
	err := start(t, Options{URL: srv.URL, Path: "/"}).wait(t)
	if err == nil || !strings.Contains(err.Error(), `200 with Content-Type "text/html", not an event stream`) {
		t.Errorf("Run: %v", err)
	}
}

// TestChangesFeed follows the change feed: the URL is the feed's own, each
// --filter-prefix is a prefix parameter, and --filter keeps the listed
// types on the client's side.
func TestChangesFeed(t *testing.T) {
	srv, reqs := sseServer(t, func(w http.ResponseWriter, r *http.Request) {
		stream(w, ": watching\n\n",
			"id: 1796174263187300\ndata: [{\"type\":\"resource_updated\",\"path\":\"/items/1\",\"etag\":\"\\\"MY9a\\\"\",\"method\":\"PATCH\"},"+
				"{\"type\":\"resource_created\",\"path\":\"/items/2\",\"etag\":null,\"method\":\"POST\"},"+
				"{\"type\":\"resource_removed\",\"path\":\"/items/3\",\"etag\":null,\"method\":\"DELETE\"}]\n\n")
		<-r.Context().Done()
	})
	r := start(t, Options{URL: srv.URL + "/changes", Changes: true, FilterPrefix: []string{"/items/", "/users/"}, Filter: []string{"resource_updated", "resource_removed"}})
	req := <-reqs
	if req.URL.Path != "/changes" || strings.Join(req.URL.Query()["prefix"], " ") != "/items/ /users/" {
		t.Errorf("request %s", req.URL)
	}
	for _, want := range []string{"resource_updated\t/items/1", "resource_removed\t/items/3"} {
		if got := r.out.next(t); got != want {
			t.Fatalf("stdout %q, want %q", got, want)
		}
	}
}

// TestStreamURL maps the options to the URL followed, and refuses
// mistakes before any request.
func TestStreamURL(t *testing.T) {
	tests := []struct {
		o    Options
		want string // "usage: <part of the message>" for a refusal
	}{
		{Options{URL: "http://gw:8080", Path: "/my/directory"}, "http://gw:8080/v1/files/%2Fmy%2Fdirectory/notify"},
		{Options{URL: "http://gw:8080/", Path: "my dir"}, "http://gw:8080/v1/files/%2Fmy%20dir/notify"},
		{Options{URL: "https://gw/api", Path: "/", Recursive: true, Filter: []string{"child_file_added", "self_removed"}}, "https://gw/api/v1/files/%2F/notify?filter=child_file_added%2Cself_removed&recursive=true"},
		{Options{URL: "http://gw", ID: "9986041", Prefix: "/files/"}, "http://gw/files/9986041/notify"},
		{Options{URL: "http://gw/changes?x=1", Changes: true, FilterPrefix: []string{"/a b/"}}, "http://gw/changes?prefix=%2Fa+b%2F&x=1"},
		{Options{URL: "http://gw/changes", Changes: true, Prefix: DefaultPrefix}, "http://gw/changes"},
		{Options{URL: "gw:8080", Path: "/"}, "usage: is not an http:// or https:// URL"},
		{Options{URL: "http://gw"}, "usage: name the directory to watch"},
		{Options{URL: "http://gw", Path: "/", ID: "1"}, "usage: not both"},
		{Options{URL: "http://gw", ID: "12a"}, "usage: digits only"},
		{Options{URL: "http://gw", Path: "/", FilterPrefix: []string{"/"}}, "usage: add --changes"},
		{Options{URL: "http://gw/changes", Changes: true, Path: "/"}, "usage: --url is the feed itself"},
	}
	for _, tc := range tests {
		got, err := tc.o.streamURL()
		if msg, ok := strings.CutPrefix(tc.want, "usage: "); ok {
			if err == nil || !IsUsage(err) || !strings.Contains(err.Error(), msg) {
				t.Errorf("%+v: %q, %v; want a usage error saying %q", tc.o, got, err, msg)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.o, got, err, tc.want)
		}
	}
}

// TestSSEReader reads the parts of the format the gateways and proxies in
// front of them may send.
func TestSSEReader(t *testing.T) {
	in := ": watching\r\n\r\n" +
		"id: 1\ndata: a\ndata:b\n\n" + // two data lines, the second without a space
		"retry: 3000\nunknown\n\n" + // nothing to dispatch
		"id: 2\n\n" + // an id alone still counts
		"event: overflow\ndata: {\"reason\":\"history\"}\n\n" +
		"data: " + strings.Repeat("x", 100<<10) + "\n\n" + // longer than the reader's buffer
		"data: cut"
	r := newSSEReader(bufio.NewReader(strings.NewReader(in)))
	want := []event{
		{data: []byte("a\nb"), id: "1", hasID: true},
		{id: "2", hasID: true},
		{name: "overflow", data: []byte(`{"reason":"history"}`)},
		{data: []byte(strings.Repeat("x", 100<<10))},
	}
	for i, w := range want {
		ev, err := r.next()
		if err != nil || ev.name != w.name || string(ev.data) != string(w.data) || ev.id != w.id || ev.hasID != w.hasID {
			t.Fatalf("event %d: %+.60v, %v; want %+.60v", i, ev, err, w)
		}
	}
	if _, err := r.next(); err == nil || err.Error() != "unexpected EOF" {
		t.Errorf("a stream cut mid-line: %v, want unexpected EOF", err)
	}
}
