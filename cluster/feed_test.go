package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
	"github.com/etaggate/etaggate/sse"
)

// hubEnd collects what a transport delivers, as a hub would.
type hubEnd struct {
	mu     sync.Mutex
	frames []sse.Frame[string]
	t      *Transport[string]
	last   uint64 // what Open returned
}

func openEnd(t *testing.T, f *Feed) *hubEnd {
	t.Helper()
	e := &hubEnd{t: NewTransport[string](f)}
	last, err := e.t.Open(func(fr *sse.Frame[string]) {
		e.mu.Lock()
		e.frames = append(e.frames, *fr)
		e.mu.Unlock()
	})
	testutil.Must(t, err)
	e.last = last
	t.Cleanup(func() { _ = e.t.Close() })
	return e
}

// wait returns the first n frames delivered, failing after 10 s.
func (e *hubEnd) wait(t *testing.T, n int) []sse.Frame[string] {
	t.Helper()
	var got []sse.Frame[string]
	testutil.Eventually(t, fmt.Sprintf("%d frames are delivered", n), func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		got = slices.Clone(e.frames)
		return len(got) >= n
	})
	return got[:n]
}

func send(t *testing.T, e *hubEnd, notes ...string) {
	t.Helper()
	testutil.Must(t, e.t.Send(&sse.Frame[string]{Notifications: notes}))
}

// TestTransportCarriesEveryReplicasFrames: frames sent through two
// replicas' transports reach both, in one order, with consecutive ids
// that continue from what Open returned.
func TestTransportCarriesEveryReplicasFrames(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := openEnd(t, open(t, srv, time.Second).Feed("/changes", 100))
	b := openEnd(t, open(t, srv, time.Second).Feed("/changes", 100))
	if a.last == 0 || a.last != b.last {
		t.Fatalf("Open returned %d and %d, want one nonzero id", a.last, b.last)
	}
	for i := range 20 {
		e := a
		if i%2 == 1 {
			e = b
		}
		send(t, e, fmt.Sprintf("write %d", i))
	}
	for name, e := range map[string]*hubEnd{"a": a, "b": b} {
		for i, f := range e.wait(t, 20) {
			if f.ID != a.last+1+uint64(i) || !slices.Equal(f.Notifications, []string{fmt.Sprintf("write %d", i)}) || f.Overflow != "" {
				t.Fatalf("replica %s's frame %d: %+v, want id %d with write %d", name, i, f, a.last+1+uint64(i), i)
			}
		}
	}
}

// TestTransportReportsTrimmedFrames: a follower that starts from an id
// whose successors were trimmed gets an overflow numbered before the
// first frame still kept, not a silent gap.
func TestTransportReportsTrimmedFrames(t *testing.T) {
	srv := testutil.StartRedis(t)
	f := open(t, srv, time.Second).Feed("/changes", 10)
	ctx := context.Background()
	first, err := f.Last(ctx)
	testutil.Must(t, err)
	for range 500 {
		_, err := f.Append(ctx, []byte(`{"n":["x"]}`))
		testutil.Must(t, err)
	}
	tr := NewTransport[string](f)
	var mu sync.Mutex
	var got []sse.Frame[string]
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.follow(fctx, first, func(fr *sse.Frame[string]) {
			mu.Lock()
			got = append(got, *fr)
			mu.Unlock()
		})
	}()
	testutil.Eventually(t, "the kept frames are delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 1 && got[len(got)-1].ID == first+500
	})
	cancel()
	<-done
	if got[0].Overflow != sse.ReasonHistory || got[0].ID != got[1].ID-1 || got[1].ID <= first+1 {
		t.Fatalf("first frames %+v %+v: want an overflow just before the first frame kept", got[0], got[1])
	}
}

// TestTransportAfterDataLoss: after Redis restarts empty, the next frame
// arrives after an overflow, with an id larger than any before.
func TestTransportAfterDataLoss(t *testing.T) {
	srv := testutil.StartRedis(t)
	e := openEnd(t, open(t, srv, time.Second).Feed("/changes", 100))
	send(t, e, "before")
	before := e.wait(t, 1)[0]
	srv.Restart()
	testutil.Eventually(t, "a frame can be sent again", func() bool {
		return e.t.Send(&sse.Frame[string]{Notifications: []string{"after"}}) == nil
	})
	got := e.wait(t, 3)
	if got[1].Overflow != sse.ReasonHistory || got[2].ID != got[1].ID+1 || got[1].ID <= before.ID || got[2].Notifications[0] != "after" {
		t.Fatalf("after the restart: %+v", got[1:])
	}
}

// TestTransportSendWhileRedisDown: a frame whose Send failed is reported
// to every replica, by an overflow before the next frame. (A Send that
// timed out may still have reached Redis: the overflow is then spurious,
// never missing.)
func TestTransportSendWhileRedisDown(t *testing.T) {
	srv := testutil.StartRedis(t)
	a := openEnd(t, open(t, srv, time.Second).Feed("/changes", 100))
	b := openEnd(t, open(t, srv, time.Second).Feed("/changes", 100))
	send(t, a, "one")
	b.wait(t, 1)
	srv.Pause()
	if err := a.t.Send(&sse.Frame[string]{Notifications: []string{"maybe"}}); err == nil {
		t.Fatal("Send succeeded with Redis stopped")
	}
	srv.Resume()
	send(t, a, "two")
	var got []sse.Frame[string]
	testutil.Eventually(t, `"two" reaches the other replica`, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		got = slices.Clone(b.frames)
		n := len(got)
		return n > 0 && len(got[n-1].Notifications) == 1 && got[n-1].Notifications[0] == "two"
	})
	n := len(got)
	if n < 3 || got[n-2].Overflow != sse.ReasonHistory || got[n-1].ID != got[n-2].ID+1 {
		t.Fatalf("the other replica got %+v; want an overflow right before two", got)
	}
}
