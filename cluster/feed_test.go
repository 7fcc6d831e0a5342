package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/testutil"
)

// follower collects what Follow delivers.
type follower struct {
	mu     sync.Mutex
	events []Event
	cancel context.CancelFunc
	done   chan error
}

func follow(t *testing.T, f *Feed, after uint64) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl := &follower{cancel: cancel, done: make(chan error, 1)}
	go func() {
		fl.done <- f.Follow(ctx, after, func(e Event) {
			fl.mu.Lock()
			fl.events = append(fl.events, e)
			fl.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-fl.done
	})
	return fl
}

// wait returns the first n events, failing after 10 s.
func (fl *follower) wait(t *testing.T, n int) []Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fl.mu.Lock()
		got := append([]Event(nil), fl.events...)
		fl.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after 10s, want %d: %v", len(got), n, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFeedCarriesEveryReplicasWrites: payloads appended through two
// replicas reach a follower on each, in one order, with ids that increase
// across the cluster; a client can resume on either replica.
func TestFeedCarriesEveryReplicasWrites(t *testing.T) {
	srv := testutil.StartRedis(t)
	a, b := open(t, srv, time.Second), open(t, srv, time.Second)
	fa, fb := a.Feed("/changes", 100), b.Feed("/changes", 100)
	ctx := context.Background()
	if _, err := fa.Append(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	la, lb := follow(t, fa, 0), follow(t, fb, 0)
	time.Sleep(200 * time.Millisecond) // both followers are reading
	var ids []uint64
	for i := range 20 {
		f := fa
		if i%2 == 1 {
			f = fb
		}
		id, err := f.Append(ctx, fmt.Appendf(nil, "write %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("id %d after %d: ids must increase across replicas", id, ids[len(ids)-1])
		}
		ids = append(ids, id)
	}
	for name, l := range map[string]*follower{"a": la, "b": lb} {
		got := l.wait(t, 20)
		for i, e := range got[:20] {
			if e.ID != ids[i] || string(e.Data) != fmt.Sprintf("write %d", i) || e.Lost {
				t.Fatalf("replica %s's follower got %d: %+v, want id %d write %d", name, i, e, ids[i], i)
			}
		}
	}
	// Resume on the other replica from the 5th id.
	events, lost, err := fb.Since(ctx, ids[4])
	if err != nil || lost {
		t.Fatalf("Since = lost %v, %v", lost, err)
	}
	if len(events) != 15 || events[0].ID != ids[5] {
		t.Fatalf("Since(id 5) gave %d events starting %v, want 15 from id %d", len(events), events[0], ids[5])
	}
}

// TestFeedReportsTrimmedHistory: an id older than what Redis keeps gets
// lost, not a silent gap.
func TestFeedReportsTrimmedHistory(t *testing.T) {
	srv := testutil.StartRedis(t)
	f := open(t, srv, time.Second).Feed("/changes", 10)
	ctx := context.Background()
	var first uint64
	for i := range 500 {
		id, err := f.Append(ctx, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = id
		}
	}
	events, lost, err := f.Since(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if !lost {
		t.Fatalf("Since the first of 500 ids with history 10: %d events and no loss reported", len(events))
	}
	_, lost, _ = f.Since(ctx, events[len(events)-2].ID)
	if lost {
		t.Fatal("a recent id was reported lost")
	}
}

// TestFeedAfterDataLoss: after Redis restarts empty, an id from before is
// reported lost, a follower says so once Redis is back, and new ids are
// larger than the old ones.
func TestFeedAfterDataLoss(t *testing.T) {
	srv := testutil.StartRedis(t)
	f := open(t, srv, time.Second).Feed("/changes", 100)
	ctx := context.Background()
	old, err := f.Append(ctx, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	fl := follow(t, f, 0)
	time.Sleep(200 * time.Millisecond)
	srv.Restart()
	var id uint64
	deadline := time.Now().Add(10 * time.Second)
	for id, err = f.Append(ctx, []byte("after")); err != nil; id, err = f.Append(ctx, []byte("after")) {
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id <= old {
		t.Fatalf("id %d after the restart is not larger than %d from before", id, old)
	}
	got := fl.wait(t, 2)
	if !got[0].Lost || string(got[1].Data) != "after" {
		t.Fatalf("follower got %+v, want a loss then the new payload", got)
	}
	if _, lost, err := f.Since(ctx, old); err != nil || !lost {
		t.Fatalf("Since(an id from before the restart) = lost %v, %v; want lost", lost, err)
	}
}
