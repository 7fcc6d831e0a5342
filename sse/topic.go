package sse

// Source is what a hub needs to know of the notifications it serves.
type Source[N any] interface {
	// Scope appends the keys of n's scope to keys and returns them:
	// where n happened, outermost first. A topic listening under the key
	// at position at is asked whether n concerns it.
	Scope(keys []string, n *N) []string
	// Left is told that a stream of topic t has ended. It is called
	// without the hub's lock, from whichever goroutine ended the stream.
	Left(t Topic[N])
}

// Topic is what a stream subscribed to: which notifications it sees and
// how each is written. Streams with equal topics share a view, in which
// each frame is encoded once. A Topic is a map key: its dynamic type must
// be comparable, and its methods must only read what never changes, as
// the hub calls them from its own goroutines.
type Topic[N any] interface {
	// Key is the scope key the topic listens under.
	Key() string
	// Match reports whether n, whose scope has Key at position at,
	// concerns the topic.
	Match(n *N, at int) bool
	// AppendJSON appends n as the topic's subscribers see it: one JSON
	// value of the list an event's data holds.
	AppendJSON(b []byte, n *N, at int) []byte
}

// view is the streams that share a topic.
type view[N any] struct {
	hub     *Hub[N]
	topic   Topic[N]
	subs    map[*Stream]struct{}
	pending []match[N] // the current frame's matches, while it is fanned out
}

// match is a notification that concerns a view, and where the view's key
// is in its scope.
type match[N any] struct {
	n  *N
	at int
}

func (v *view[N]) leave(s *Stream) { v.hub.unsubscribe(s, v) }

func (v *view[N]) enqueue(e event, id uint64) {
	for s := range v.subs {
		s.enqueue(e, id)
	}
}

// route calls fn for every view n concerns, with the position of the
// view's key in n's scope. h.mu is held.
func (h *Hub[N]) route(n *N, fn func(v *view[N], at int)) {
	h.keys = h.src.Scope(h.keys[:0], n)
	for at, key := range h.keys {
		for _, v := range h.byKey[key] {
			if v.topic.Match(n, at) {
				fn(v, at)
			}
		}
	}
}

// fanOut hands a frame of notifications to every stream it concerns, as
// one event per view. h.mu is held.
func (h *Hub[N]) fanOut(f *Frame[N]) {
	touched := h.touched[:0]
	for i := range f.Notifications {
		h.route(&f.Notifications[i], func(v *view[N], at int) {
			if len(v.pending) == 0 {
				touched = append(touched, v)
			}
			v.pending = append(v.pending, match[N]{&f.Notifications[i], at})
		})
	}
	for _, v := range touched {
		e := encodeEvent(f.ID, v.topic, v.pending)
		clear(v.pending)
		v.pending = v.pending[:0]
		v.enqueue(e, f.ID)
	}
	clear(touched)
	h.touched = touched[:0]
}

// overflowTo hands an overflow frame to every stream it concerns.
func (h *Hub[N]) overflowTo(f *Frame[N]) {
	e := overflowEvent(f.ID, f.Overflow)
	if f.Scope == nil {
		for _, v := range h.views {
			v.enqueue(e, f.ID)
		}
		return
	}
	h.route(f.Scope, func(v *view[N], _ int) { v.enqueue(e, f.ID) })
}

// concerns reports whether an overflow frame concerns topic t.
func (h *Hub[N]) concerns(f *Frame[N], t Topic[N]) bool {
	if f.Scope == nil {
		return true
	}
	return h.matchAt(f.Scope, t) >= 0
}

// matchAt is the position at which n concerns t, or -1.
func (h *Hub[N]) matchAt(n *N, t Topic[N]) int {
	h.keys = h.src.Scope(h.keys[:0], n)
	key := t.Key()
	for at, k := range h.keys {
		if k == key && t.Match(n, at) {
			return at
		}
	}
	return -1
}
