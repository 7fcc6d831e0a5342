// Package ssetest is a server-sent events client for tests of the notify
// endpoint: it reads a real stream over HTTP and parses it the way a
// browser's EventSource does (id, event, data and comment lines).
package ssetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// Event is one dispatched SSE event.
type Event struct {
	ID   string
	Type string // "" for the default "message" type
	Data string
	At   time.Time // when its last line was read
}

// Notification is one element of an event's JSON list.
type Notification struct {
	Type       string   `json:"type"`
	Path       string   `json:"path"`
	Spine      []string `json:"spine"`
	StreamName *string  `json:"stream_name"`
}

// Decode parses the data of an event of notifications.
func (e Event) Decode() ([]Notification, error) {
	var ns []Notification
	if err := json.Unmarshal([]byte(e.Data), &ns); err != nil {
		return nil, fmt.Errorf("event data %q: %w", e.Data, err)
	}
	return ns, nil
}

// Stream is an open event stream.
type Stream struct {
	Resp *http.Response

	events   chan Event
	cancel   context.CancelFunc
	done     chan struct{}
	mu       sync.Mutex
	err      error
	comments []string
	first    string // the stream's first line
	opened   chan struct{}
}

// Open sends GET url and, if the answer is a 200 event stream, starts
// parsing it and waits for its first comment line (the server's sign that
// the watch is established). Any other answer is returned with a nil
// Stream and the response's body read into the error.
func Open(client *http.Client, url string, header http.Header) (*Stream, *http.Response, error) {
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp, fmt.Errorf("GET %s: %s %s: %s", url, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	s := &Stream{
		Resp:   resp,
		events: make(chan Event, 4096),
		cancel: cancel,
		done:   make(chan struct{}),
		opened: make(chan struct{}),
	}
	go s.read()
	select {
	case <-s.opened:
	case <-s.done:
		return nil, resp, fmt.Errorf("stream ended before its first line: %v", s.Err())
	case <-time.After(30 * time.Second):
		s.Close()
		return nil, resp, errors.New("no first line within 30s")
	}
	if !strings.HasPrefix(s.first, ":") {
		s.Close()
		return nil, resp, fmt.Errorf("first line %q is not a comment", s.first)
	}
	return s, resp, nil
}

// MustOpen is Open failing t on error.
func MustOpen(t testing.TB, client *http.Client, url string, header http.Header) *Stream {
	t.Helper()
	s, _, err := Open(client, url, header)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *Stream) read() {
	defer close(s.done)
	defer close(s.events)
	r := bufio.NewReaderSize(s.Resp.Body, 64*1024)
	var ev Event
	var data []string
	first := true
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			s.mu.Lock()
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			s.err = err
			s.mu.Unlock()
			if first {
				close(s.opened)
			}
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if first {
			s.first = line
			first = false
			close(s.opened)
		}
		switch {
		case line == "":
			if len(data) > 0 {
				ev.Data = strings.Join(data, "\n")
				ev.At = time.Now()
				s.events <- ev
			}
			ev = Event{ID: ev.ID}
			data = data[:0]
		case strings.HasPrefix(line, ":"):
			s.mu.Lock()
			s.comments = append(s.comments, line)
			s.mu.Unlock()
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Type = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// Next returns the next event, or io.EOF once the stream has ended, or an
// error after timeout.
func (s *Stream) Next(timeout time.Duration) (Event, error) {
	select {
	case ev, ok := <-s.events:
		if !ok {
			return Event{}, s.Err()
		}
		return ev, nil
	case <-time.After(timeout):
		return Event{}, fmt.Errorf("no event within %s", timeout)
	}
}

// Collect reads events of notifications until enough reports true for everything
// received so far, and returns it all. Overflow events fail t.
func (s *Stream) Collect(t testing.TB, timeout time.Duration, enough func([]Notification) bool) []Notification {
	t.Helper()
	var all []Notification
	deadline := time.Now().Add(timeout)
	for !enough(all) {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("timed out after %s; received %d notifications:\n%s", timeout, len(all), Format(all))
		}
		ev, err := s.Next(left)
		if err != nil {
			t.Fatalf("%v; received %d notifications:\n%s", err, len(all), Format(all))
		}
		if ev.Type != "" {
			t.Fatalf("unexpected event %q: %s", ev.Type, ev.Data)
		}
		ns, err := ev.Decode()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ns...)
	}
	return all
}

// Ended waits for the stream to end and reports the events that came
// before the end.
func (s *Stream) Ended(timeout time.Duration) ([]Event, bool) {
	var evs []Event
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				return evs, true
			}
			evs = append(evs, ev)
		case <-deadline:
			return evs, false
		}
	}
}

// Err is why the stream ended (io.EOF for a clean end), or nil.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Comments returns the comment lines read so far.
func (s *Stream) Comments() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.comments...)
}

// Close disconnects.
func (s *Stream) Close() {
	s.cancel()
	s.Resp.Body.Close()
	<-s.done
}

// Format renders notifications one a line, for failure messages.
func Format(ns []Notification) string {
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "  %s %s %v\n", n.Type, n.Path, n.Spine)
	}
	return b.String()
}

// Has reports whether ns holds a notification of type typ about path.
func Has(ns []Notification, typ, path string) bool {
	return Index(ns, typ, path) >= 0
}

// Index is the position of the first notification of type typ about path,
// or -1.
func Index(ns []Notification, typ, path string) int {
	for i, n := range ns {
		if n.Type == typ && n.Path == path {
			return i
		}
	}
	return -1
}

// ServingGoroutines counts the goroutines serving a stream through net/http,
// one per stream; a stream whose connection the hub took over has none.
func ServingGoroutines() int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	n := 0
	for _, g := range strings.Split(buf.String(), "\n\n") {
		if strings.Contains(g, "sse.(*Stream).serve") {
			var k int
			fmt.Sscanf(g, "%d @", &k)
			n += k
		}
	}
	return n
}
