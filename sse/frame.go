package sse

import "strconv"

// Frame is one batch window's notifications, or an overflow marker: the
// unit of ids and of history. Each stream receives the part of a frame
// that concerns it as one SSE event. A frame is not changed once sent.
type Frame[N any] struct {
	ID            uint64 // set by the Transport
	Notifications []N    // in publication order; empty for an overflow
	// Overflow, when not empty, makes the frame an overflow marker with
	// this reason, for the streams whose topic Scope concerns (every
	// stream when Scope is nil).
	Overflow string
	Scope    *N
}

// remember keeps f in the history ring. h.mu is held.
func (h *Hub[N]) remember(f *Frame[N]) {
	if len(h.history) < h.cfg.History {
		h.history = append(h.history, f)
		return
	}
	h.history[h.histAt] = f
	h.histAt = (h.histAt + 1) % len(h.history)
}

// historyAfter returns the retained frames with ids above after, oldest
// first, and whether they are all the frames since after: ids are
// consecutive, so any missing one is a gap. h.mu is held.
func (h *Hub[N]) historyAfter(after uint64) ([]*Frame[N], bool) {
	if after == h.last {
		return nil, true
	}
	var out []*Frame[N]
	next := after + 1
	for i := range h.history {
		f := h.history[(h.histAt+i)%len(h.history)]
		if f.ID <= after {
			continue
		}
		if f.ID != next {
			return nil, false
		}
		out = append(out, f)
		next++
	}
	return out, len(out) > 0 && next == h.last+1
}

// replay builds the events a new stream of topic t missed since the
// frame lastID, or an overflow when the history cannot tell: the id is
// not a number of this hub, frames since it are no longer retained, or
// the source did not cover t the whole time (since is later). h.mu is
// held.
func (h *Hub[N]) replay(t Topic[N], since uint64, lastID string) []event {
	lost := []event{overflowEvent(h.last, ReasonHistory)}
	id, err := strconv.ParseUint(lastID, 10, 64)
	if err != nil || id > h.last || id < since {
		return lost
	}
	frames, complete := h.historyAfter(id)
	if !complete {
		return lost
	}
	var events []event
	var ms []match[N]
	for _, f := range frames {
		if f.Overflow != "" {
			if h.concerns(f, t) {
				// What came before it is moot: the client rescans.
				events = append(events[:0], overflowEvent(f.ID, f.Overflow))
			}
			continue
		}
		ms = ms[:0]
		for i := range f.Notifications {
			if at := h.matchAt(&f.Notifications[i], t); at >= 0 {
				ms = append(ms, match[N]{&f.Notifications[i], at})
			}
		}
		if len(ms) > 0 {
			events = append(events, encodeEvent(f.ID, t, ms))
		}
	}
	if len(events) > h.cfg.Queue {
		return lost
	}
	return events
}
