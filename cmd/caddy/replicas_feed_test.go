package main

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/etaggate/etaggate/internal/ssetest"
	"github.com/etaggate/etaggate/internal/testutil"
)

// change is one element of a change feed event.
type change struct {
	Type, Path, Method string
}

func changesOf(t *testing.T, ev ssetest.Event) []change {
	t.Helper()
	var cs []change
	if err := json.Unmarshal([]byte(ev.Data), &cs); err != nil {
		t.Fatalf("event %q: %v", ev.Data, err)
	}
	return cs
}

func next(t *testing.T, s *ssetest.Stream, what string) ssetest.Event {
	t.Helper()
	ev, err := s.Next(20 * time.Second)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return ev
}

// TestReplicasShareChangeFeed: each replica's change feed carries the
// writes made through both replicas, under the same ids, which increase
// across them; a client resumes on the other replica with its
// Last-Event-ID.
func TestReplicasShareChangeFeed(t *testing.T) {
	redis := testutil.StartRedis(t)
	up := testutil.StartCounterStore(t, 0)
	rs := startReplicas(t, 2, replicaConfig(redis.Addr, faultLease, up.URL, "changes /changes"))
	c := httpClient()
	a, b := rs[0].URL+"/counter", rs[1].URL+"/counter"
	increment(t, c, a, b, true) // past the hold of a Redis that started empty

	onA := ssetest.MustOpen(t, testutil.Client(), rs[0].URL+"/changes", nil)
	onB := ssetest.MustOpen(t, testutil.Client(), rs[1].URL+"/changes", nil)
	var ids [2]uint64
	for i, through := range []string{a, b} {
		increment(t, c, through, through, false)
		evA, evB := next(t, onA, "a's feed"), next(t, onB, "b's feed")
		if evA.ID != evB.ID || evA.Data != evB.Data {
			t.Fatalf("write %d: a's feed has %s %s, b's %s %s", i, evA.ID, evA.Data, evB.ID, evB.Data)
		}
		if cs := changesOf(t, evA); len(cs) != 1 || cs[0].Path != "/counter" || cs[0].Method != "PUT" || cs[0].Type != "resource_updated" {
			t.Fatalf("write %d: %s", i, evA.Data)
		}
		id, err := strconv.ParseUint(evA.ID, 10, 64)
		testutil.Must(t, err)
		ids[i] = id
	}
	if ids[1] <= ids[0] {
		t.Fatalf("ids %d then %d: they must increase across replicas", ids[0], ids[1])
	}

	// A client of b's feed resumes on a with the first id: a replays the
	// write made through b.
	again := ssetest.MustOpen(t, testutil.Client(), rs[0].URL+"/changes", http.Header{"Last-Event-ID": {strconv.FormatUint(ids[0], 10)}})
	ev := next(t, again, "the resumed stream")
	if ev.ID != strconv.FormatUint(ids[1], 10) || ev.Type != "" {
		t.Fatalf("resumed on a after %d: %s %q %s, want the write through b, id %d", ids[0], ev.ID, ev.Type, ev.Data, ids[1])
	}
}
