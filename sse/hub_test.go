package sse

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// Generous: these waits are about correctness, never speed.
const arrive = 20 * time.Second

// note is the tests' notification: a text that happened under a key.
type note struct{ key, text string }

// notes is the tests' source: a note's scope is its key alone.
type notes struct {
	mu   sync.Mutex
	left []Topic[note]
}

func (*notes) Scope(keys []string, n *note) []string { return append(keys, n.key) }

func (s *notes) Left(t Topic[note]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left = append(s.left, t)
}

func (s *notes) leftCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.left)
}

// keyTopic sees the notes under key whose text starts with prefix, and
// writes each as a JSON string.
type keyTopic struct{ key, prefix string }

func (t keyTopic) Key() string { return t.key }

func (t keyTopic) Match(n *note, at int) bool { return strings.HasPrefix(n.text, t.prefix) }

func (t keyTopic) AppendJSON(b []byte, n *note, at int) []byte {
	return AppendJSONString(b, []byte(n.text))
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Batch = 5 * time.Millisecond
	cfg.Logger = zap.NewNop()
	return cfg
}

// startHub runs a hub behind a real HTTP server on 127.0.0.1: GET
// /?key=k&prefix=p streams keyTopic{k, p}.
func startHub(t *testing.T, cfg Config, transport Transport[note]) (*Hub[note], *notes, string) {
	t.Helper()
	src := new(notes)
	h, err := New(cfg, src, transport)
	testutil.Must(t, err)
	srv := httptest.NewServer(handler(h))
	t.Cleanup(func() {
		testutil.Must(t, h.Close())
		srv.Close()
	})
	return h, src, srv.URL
}

func handler(h *Hub[note]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		lastID, resume := LastEventID(r)
		s, err := h.Subscribe(Subscription[note]{
			Topic:       keyTopic{q.Get("key"), q.Get("prefix")},
			LastEventID: lastID,
			Resume:      resume,
			Name:        r.URL.RawQuery,
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.Serve(w, r)
	})
}

func client() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// texts decodes an event's data, a JSON list of strings.
func texts(t *testing.T, ev ssetest.Event) []string {
	t.Helper()
	if ev.Type != "" {
		t.Fatalf("event %q (%s), want notifications", ev.Type, ev.Data)
	}
	var out []string
	testutil.Must(t, json.Unmarshal([]byte(ev.Data), &out))
	return out
}

func nextEvent(t *testing.T, s *ssetest.Stream) ssetest.Event {
	t.Helper()
	ev, err := s.Next(arrive)
	testutil.Must(t, err)
	return ev
}

func id(t *testing.T, ev ssetest.Event) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(ev.ID, 10, 64)
	testutil.Must(t, err)
	return v
}

// TestBatchWindow checks that what is published in one batch window
// arrives as one event, that a busier window is split into frames of
// MaxFrame, and that ids increase by one per frame.
func TestBatchWindow(t *testing.T) {
	cfg := testConfig()
	cfg.Batch = 300 * time.Millisecond
	h, _, base := startHub(t, cfg, nil)
	s := ssetest.MustOpen(t, client(), base+"/?key=k", nil)
	for _, x := range []string{"a", "b", "c"} {
		h.Publish(note{"k", x})
	}
	h.Publish(note{"other", "unseen"})
	first := nextEvent(t, s)
	if got := texts(t, first); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("one window gave %v, want [a b c] in one event", got)
	}

	const busy = 2*MaxFrame + 10
	for i := range busy {
		h.Publish(note{"k", strconv.Itoa(i)})
	}
	prev, frames, got := id(t, first), 0, 0
	for got < busy {
		ev := nextEvent(t, s)
		if id(t, ev) != prev+1 {
			t.Errorf("id %s after %d, want consecutive ids", ev.ID, prev)
		}
		prev = id(t, ev)
		k := len(texts(t, ev))
		if k > MaxFrame {
			t.Errorf("an event of %d notifications, more than MaxFrame", k)
		}
		got += k
		frames++
	}
	if frames < 3 || got != busy {
		t.Errorf("a window of %d notifications gave %d in %d events, want them all in at least 3", busy, got, frames)
	}
	if st := h.Stats(); st.Frames != uint64(1+frames) {
		t.Errorf("%d frames delivered, want %d", st.Frames, 1+frames)
	}
}

// TestTopicsShareNothingTheyDoNotMatch checks routing: a stream sees the
// notes under its key that its topic matches, and nothing else.
func TestTopicsShareNothingTheyDoNotMatch(t *testing.T) {
	h, _, base := startHub(t, testConfig(), nil)
	all := ssetest.MustOpen(t, client(), base+"/?key=k", nil)
	some := ssetest.MustOpen(t, client(), base+"/?key=k&prefix=x", nil)
	other := ssetest.MustOpen(t, client(), base+"/?key=j", nil)
	h.Publish(note{"k", "a"})
	h.Publish(note{"k", "xb"})
	h.Publish(note{"j", "c"})
	var gotAll []string
	for len(gotAll) < 2 {
		gotAll = append(gotAll, texts(t, nextEvent(t, all))...)
	}
	if !slices.Equal(gotAll, []string{"a", "xb"}) {
		t.Errorf("key k: %v", gotAll)
	}
	if got := texts(t, nextEvent(t, some)); !slices.Equal(got, []string{"xb"}) {
		t.Errorf("key k, prefix x: %v", got)
	}
	if got := texts(t, nextEvent(t, other)); !slices.Equal(got, []string{"c"}) {
		t.Errorf("key j: %v", got)
	}
}

// TestOverflow checks overflow markers: to every stream with no scope,
// to the streams the scope concerns otherwise, each with an id and a
// reason, in their place among the notifications.
func TestOverflow(t *testing.T) {
	h, _, base := startHub(t, testConfig(), nil)
	a := ssetest.MustOpen(t, client(), base+"/?key=a", nil)
	b := ssetest.MustOpen(t, client(), base+"/?key=b", nil)
	h.Publish(note{"a", "before"})
	h.Overflow("kernel_queue", nil)
	h.Overflow("watch_limit", &note{key: "b"})
	h.Publish(note{"a", "after"})

	if got := texts(t, nextEvent(t, a)); !slices.Equal(got, []string{"before"}) {
		t.Errorf("a: first %v", got)
	}
	for _, s := range []*ssetest.Stream{a, b} {
		ev := nextEvent(t, s)
		if ev.Type != "overflow" || ev.Data != `{"reason":"kernel_queue"}` || ev.ID == "" {
			t.Errorf("got %+v, want an overflow for the kernel queue", ev)
		}
	}
	if ev := nextEvent(t, b); ev.Type != "overflow" || ev.Data != `{"reason":"watch_limit"}` {
		t.Errorf("b: got %+v, want the scoped overflow", ev)
	}
	if got := texts(t, nextEvent(t, a)); !slices.Equal(got, []string{"after"}) {
		t.Errorf("a: after the overflows, %v; the scoped one is not a's", got)
	}
}

// TestEnd checks End: the final notification reaches the streams under
// the key, which then end cleanly; the others go on.
func TestEnd(t *testing.T) {
	h, src, base := startHub(t, testConfig(), nil)
	doomed := ssetest.MustOpen(t, client(), base+"/?key=a", nil)
	filtered := ssetest.MustOpen(t, client(), base+"/?key=a&prefix=nothing", nil)
	other := ssetest.MustOpen(t, client(), base+"/?key=b", nil)
	h.Publish(note{"a", "last but one"})
	h.End("a", note{"a", "gone"})
	h.End("nobody", note{"nobody", "unseen"})

	evs, ended := doomed.Ended(arrive)
	var got []string
	for _, ev := range evs {
		got = append(got, texts(t, ev)...)
	}
	if !ended || !slices.Equal(got, []string{"last but one", "gone"}) || !errors.Is(doomed.Err(), io.EOF) {
		t.Errorf("ended %v with %v (%v), want the final note, then a clean end", ended, got, doomed.Err())
	}
	if _, ended := filtered.Ended(arrive); !ended {
		t.Error("a stream under the key whose topic leaves the final note out is still open")
	}
	h.Publish(note{"b", "still here"})
	if got := texts(t, nextEvent(t, other)); !slices.Equal(got, []string{"still here"}) {
		t.Errorf("other key: %v", got)
	}
	testutil.Eventually(t, "the source told of both ended streams", func() bool { return src.leftCount() == 2 })
	if st := h.Stats(); st.Frames != 2 {
		t.Errorf("%d frames, want 2: nothing is published under a key nobody listens to", st.Frames)
	}
}

// TestMaxSubscribers checks the bound on open streams.
func TestMaxSubscribers(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSubscribers = 2
	h, _, base := startHub(t, cfg, nil)
	first := ssetest.MustOpen(t, client(), base+"/?key=a", nil)
	ssetest.MustOpen(t, client(), base+"/?key=b", nil)
	if _, err := h.Subscribe(Subscription[note]{Topic: keyTopic{key: "c"}}); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("a third stream: %v, want ErrTooManySubscribers", err)
	}
	first.Close()
	testutil.Eventually(t, "a place freed", func() bool {
		s, err := h.Subscribe(Subscription[note]{Topic: keyTopic{key: "c"}})
		if err == nil {
			s.Close()
		}
		return err == nil
	})
}

// TestClose closes the hub under open streams: each receives what was
// still inside the batch window, then ends cleanly with a closing
// comment; the source hears of each, no goroutine is left behind, and the
// hub refuses new streams.
func TestClose(t *testing.T) {
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	src := new(notes)
	cfg := testConfig()
	cfg.Batch = time.Hour
	h, err := New(cfg, src, nil)
	testutil.Must(t, err)
	srv := httptest.NewServer(handler(h))
	var streams []*ssetest.Stream
	for i := range 10 {
		streams = append(streams, ssetest.MustOpen(t, client(), fmt.Sprintf("%s/?key=%d", srv.URL, i%3), nil))
	}
	for i := range 3 {
		h.Publish(note{strconv.Itoa(i), "in the window"})
	}
	testutil.Must(t, h.Close())
	for _, s := range streams {
		evs, ended := s.Ended(arrive)
		if !ended {
			t.Fatal("a stream is still open after Close")
		}
		if len(evs) != 1 || !slices.Equal(texts(t, evs[0]), []string{"in the window"}) {
			t.Errorf("before the end: %+v, want the note published before Close", evs)
		}
		if s.Err() != io.EOF {
			t.Errorf("stream ended with %v, want a clean end", s.Err())
		}
		if c := s.Comments(); c[len(c)-1] != ": closing" {
			t.Errorf("last comment %q, want \": closing\"", c[len(c)-1])
		}
		s.Close()
	}
	if n := src.leftCount(); n != len(streams) {
		t.Errorf("the source was told of %d ended streams, want %d", n, len(streams))
	}
	srv.Close()
	testutil.Must(t, h.Close()) // idempotent
	testutil.Eventually(t, "every goroutine returned", func() bool { return runtime.NumGoroutine() <= before })
	if _, err := h.Subscribe(Subscription[note]{Topic: keyTopic{key: "a"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close: %v, want ErrClosed", err)
	}
	h.Publish(note{"a", "after close"}) // ignored, not a panic
}

// TestKeepalive checks the keep-alive comments of an idle stream.
func TestKeepalive(t *testing.T) {
	cfg := testConfig()
	cfg.Keepalive = 50 * time.Millisecond
	_, _, base := startHub(t, cfg, nil)
	s := ssetest.MustOpen(t, client(), base+"/?key=a", nil)
	if c := s.Comments(); len(c) == 0 || c[0] != ": watching" {
		t.Errorf("first comment %v, want \": watching\"", c)
	}
	testutil.Eventually(t, "a keep-alive comment", func() bool { return slices.Contains(s.Comments(), ": keepalive") })
}

func TestEncodeEvent(t *testing.T) {
	ms := []match[note]{{&note{"k", `a "b"`}, 0}, {&note{"k", "c"}, 0}}
	e := encodeEvent[note](42, keyTopic{key: "k"}, ms)
	want := "id: 42\ndata: [\"a \\\"b\\\"\",\"c\"]\n\n"
	if string(e.text()) != want {
		t.Errorf("event %q, want %q", e.text(), want)
	}
	if chunk := fmt.Sprintf("%x\r\n%s\r\n", len(want), want); string(e.chunk) != chunk {
		t.Errorf("chunk %q, want %q", e.chunk, chunk)
	}
	if o := overflowEvent(7, "history"); string(o.text()) != "id: 7\nevent: overflow\ndata: {\"reason\":\"history\"}\n\n" {
		t.Errorf("overflow event %q", o.text())
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add([]byte("plain/name.txt"))
	f.Add([]byte("quote\" back\\slash\nnew\x00nul\x7f"))
	f.Add([]byte("caf\xc3\xa9 \xff\xfe broken \u2028"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := AppendJSONString(nil, b)
		var s string
		if err := json.Unmarshal(out, &s); err != nil {
			t.Fatalf("%q encoded as invalid JSON %q: %v", b, out, err)
		}
		if utf8.Valid(b) && s != string(b) {
			t.Fatalf("%q round-tripped as %q", b, s)
		}
		if strings.ContainsAny(string(out), "\n\r") {
			t.Fatalf("%q: encoding %q holds a line break, which would cut the SSE data line", b, out)
		}
	})
}
