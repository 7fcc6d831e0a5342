package sse

import (
	"strconv"
	"strings"
	"testing"

	"github.com/etaggate/etaggate/internal/testutil"
)

// publishFrames sends each text as a frame of its own under key k and
// waits until the hub has delivered them; it returns their ids.
func publishFrames(t *testing.T, h *Hub[note], texts ...string) []uint64 {
	t.Helper()
	var ids []uint64
	for _, x := range texts {
		want := h.Stats().Frames + 1
		if x == "!overflow" {
			h.Overflow("kernel_queue", nil)
		} else {
			h.Publish(note{"k", x})
		}
		testutil.Eventually(t, "the frame delivered", func() bool { return h.Stats().Frames == want })
		ids = append(ids, h.LastID())
	}
	return ids
}

// replayed subscribes as a client resuming from lastID and returns what
// is queued for it, one line per event: the texts, or "overflow <reason>".
func replayed(t *testing.T, h *Hub[note], topic keyTopic, since uint64, lastID string) []string {
	t.Helper()
	s, err := h.Subscribe(Subscription[note]{Topic: topic, Since: since, LastEventID: lastID, Resume: true})
	testutil.Must(t, err)
	defer s.Close()
	events, _, _ := s.take()
	var out []string
	for _, e := range events {
		text := string(e.text())
		if _, rest, ok := strings.Cut(text, "event: overflow\ndata: {\"reason\":\""); ok {
			out = append(out, "overflow "+strings.TrimSuffix(rest, "\"}\n\n"))
			continue
		}
		_, data, _ := strings.Cut(text, "data: ")
		out = append(out, strings.TrimSpace(data))
	}
	return out
}

// TestReplay checks Last-Event-ID replay from the history, and the
// overflow it gives when the history cannot tell what was missed.
func TestReplay(t *testing.T) {
	cfg := testConfig()
	cfg.Batch = -1
	cfg.History = 4
	cfg.Queue = 2
	h, err := New(cfg, new(notes), nil)
	testutil.Must(t, err)
	defer h.Close()
	start := h.LastID()
	ids := publishFrames(t, h, "a", "b", "c")
	all := keyTopic{key: "k"}
	str := func(id uint64) string { return strconv.FormatUint(id, 10) }

	for _, c := range []struct {
		name   string
		topic  keyTopic
		since  uint64
		lastID string
		want   string
	}{
		{"up to date", all, start, str(ids[2]), ""},
		{"one missed", all, start, str(ids[1]), `["c"]`},
		{"two missed", all, start, str(ids[0]), `["b"] ["c"]`},
		{"only what the topic sees", keyTopic{key: "k", prefix: "b"}, start, str(ids[0]), `["b"]`},
		{"more than the queue holds", all, start, str(start), "overflow history"},
		{"from the future", all, start, str(ids[2] + 1), "overflow history"},
		{"from another run", all, 0, "12", "overflow history"},
		{"not a number", all, start, "abc", "overflow history"},
		{"from before the source covered the topic", all, ids[1], str(ids[0]), "overflow history"},
		{"from when the source began to", all, ids[1], str(ids[1]), `["c"]`},
	} {
		if got := strings.Join(replayed(t, h, c.topic, c.since, c.lastID), " "); got != c.want {
			t.Errorf("%s: replayed %q, want %q", c.name, got, c.want)
		}
	}

	// An overflow in the history is replayed, and what came before it is
	// moot.
	ids = append(ids, publishFrames(t, h, "!overflow", "d")...)
	if got := strings.Join(replayed(t, h, all, start, str(ids[1])), " "); got != `overflow kernel_queue ["d"]` {
		t.Errorf("across an overflow: %q", got)
	}
	// Frames no longer retained (History 4): a gap.
	publishFrames(t, h, "e", "f")
	if got := strings.Join(replayed(t, h, all, start, str(ids[1])), " "); got != "overflow history" {
		t.Errorf("older than the history: %q", got)
	}
}
