package sse

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// bus stands for what a cluster shares (Redis, say): it numbers the
// frames of every hub on it consecutively and delivers each, as a copy,
// to every hub, the sender included.
type bus struct {
	mu    sync.Mutex
	last  uint64
	hubs  []func(*Frame[note])
	sends int
}

// end is one hub's Transport on the bus.
type end struct{ b *bus }

func (e end) Open(deliver func(*Frame[note])) (uint64, error) {
	e.b.mu.Lock()
	defer e.b.mu.Unlock()
	e.b.hubs = append(e.b.hubs, deliver)
	return e.b.last, nil
}

func (e end) Send(f *Frame[note]) error {
	e.b.mu.Lock()
	defer e.b.mu.Unlock()
	e.b.last++
	e.b.sends++
	for _, deliver := range e.b.hubs {
		c := *f
		c.ID = e.b.last
		c.Notifications = slices.Clone(f.Notifications)
		deliver(&c)
	}
	return nil
}

func (e end) Close() error { return nil }

// TestSharedTransport runs hubs on one transport, as replicas on a
// cluster's bus: what is published on one reaches the streams of all,
// with ids that increase across them; a client resumes on another replica
// with the id it had; a replica that joined later answers an id from
// before it with an overflow, never with a silent gap.
func TestSharedTransport(t *testing.T) {
	b := &bus{last: 1000}
	a, _, baseA := startHub(t, testConfig(), end{b})
	bh, _, baseB := startHub(t, testConfig(), end{b})
	onA := ssetest.MustOpen(t, client(), baseA+"/?key=k", nil)
	onB := ssetest.MustOpen(t, client(), baseB+"/?key=k", nil)

	a.Publish(note{"k", "from a"})
	x := nextEvent(t, onB)
	if got := texts(t, x); !slices.Equal(got, []string{"from a"}) || x.ID != "1001" {
		t.Errorf("on b: %v id %s, want a's note with the bus's first id", got, x.ID)
	}
	if ev := nextEvent(t, onA); ev.ID != x.ID {
		t.Errorf("on a: id %s, on b %s", ev.ID, x.ID)
	}
	bh.Publish(note{"k", "from b"})
	for _, s := range []*ssetest.Stream{onA, onB} {
		if ev := nextEvent(t, s); ev.ID != "1002" || !slices.Equal(texts(t, ev), []string{"from b"}) {
			t.Errorf("b's note: %+v", ev)
		}
	}

	// A client of a resumes on b with the id it had from a.
	again := ssetest.MustOpen(t, client(), baseB+"/?key=k", http.Header{"Last-Event-ID": {x.ID}})
	if got := texts(t, nextEvent(t, again)); !slices.Equal(got, []string{"from b"}) {
		t.Errorf("resumed on b: %v, want what followed %s", got, x.ID)
	}

	// A replica that joined now was delivered neither.
	late, err := New(testConfig(), new(notes), Transport[note](end{b}))
	testutil.Must(t, err)
	srv := httptest.NewServer(handler(late))
	defer srv.Close()
	defer late.Close()
	s := ssetest.MustOpen(t, client(), srv.URL+"/?key=k", http.Header{"Last-Event-ID": {x.ID}})
	if ev := nextEvent(t, s); ev.Type != "overflow" || ev.Data != `{"reason":"history"}` {
		t.Errorf("resumed on a late replica: %+v, want an overflow", ev)
	}
	if b.sends != 2 {
		t.Errorf("%d frames sent on the bus, want 2", b.sends)
	}
}
