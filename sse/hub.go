package sse

import (
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Hub serves the streams of one source's notifications of type N.
//
// It owns one goroutine, which closes batch windows into frames and sends
// them through the transport, and the writers of the connections it took
// over. Close ends every stream, stops them all and waits for them.
type Hub[N any] struct {
	*core
	src       Source[N]
	transport Transport[N]
	wake      chan struct{} // cap 1: the window changed
	stop      chan struct{}
	loopDone  sync.WaitGroup

	mu       sync.Mutex // guards everything below
	closed   bool
	streams  map[*Stream]struct{}
	views    map[Topic[N]]*view[N]
	byKey    map[string][]*view[N]
	window   []N        // notifications of the open window
	marks    []mark[N]  // what happens between them
	windowAt time.Time  // when the window opened
	ready    []batch[N] // windows closed early (full, or an overflow), to send first
	last     uint64     // id of the last frame delivered
	frames   uint64     // frames delivered
	history  []*Frame[N]
	histAt   int        // oldest frame, once history is full
	keys     []string   // scratch for Source.Scope
	touched  []*view[N] // scratch for fanOut
}

// mark is an overflow or an end of streams, in its place among the
// window's notifications: it applies after window[:at].
type mark[N any] struct {
	at       int
	overflow *Frame[N]
	ends     []*view[N]
}

// batch is a closed window: its notifications and marks.
type batch[N any] struct {
	window []N
	marks  []mark[N]
}

// core is what a hub's streams share, whatever the notifications.
type core struct {
	cfg     Config
	log     *zap.Logger
	wires   *wires
	running sync.WaitGroup // every stream, until its Close
	cutOff  uint64         // guarded by the hub's mu
}

// Subscription is what Subscribe opens a stream for.
type Subscription[N any] struct {
	Topic Topic[N]
	// Since is the hub's LastID when the source began to see everything
	// Topic covers: a client resuming from an earlier id may have missed
	// something and is sent an overflow.
	Since uint64
	// LastEventID is the request's Last-Event-ID (see LastEventID); Resume
	// tells whether it had one.
	LastEventID string
	Resume      bool
	// Name names the stream in logs: a ref, a prefix.
	Name string
}

// New starts a hub for src's notifications. A nil transport keeps the hub
// on its own, numbering frames itself.
func New[N any](cfg Config, src Source[N], transport Transport[N]) (*Hub[N], error) {
	if transport == nil {
		transport = new(local[N])
	}
	h := &Hub[N]{
		core:      &core{cfg: cfg, log: cfg.Logger},
		src:       src,
		transport: transport,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		streams:   make(map[*Stream]struct{}),
		views:     make(map[Topic[N]]*view[N]),
		byKey:     make(map[string][]*view[N]),
	}
	w, err := newWires(h.core)
	if err != nil {
		return nil, err
	}
	h.wires = w
	last, err := transport.Open(h.deliver)
	if err != nil {
		w.close()
		return nil, err
	}
	h.last = last
	h.loopDone.Add(1)
	go h.run()
	return h, nil
}

// Publish adds n to the batch window.
func (h *Hub[N]) Publish(n N) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.opening()
	h.window = append(h.window, n)
	if len(h.window) >= MaxFrame {
		h.closeWindow()
	}
}

// Overflow tells the streams that scope concerns (every stream for nil)
// that notifications were lost, for reason: after what was published
// before, they are sent `event: overflow` with data {"reason": reason}. It
// is kept in the history, so a client resuming from before it is told too.
func (h *Hub[N]) Overflow(reason string, scope *N) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.opening()
	h.marks = append(h.marks, mark[N]{at: len(h.window), overflow: &Frame[N]{Overflow: reason, Scope: scope}})
	h.closeWindow()
}

// End publishes final to the streams whose topic listens under key and
// ends them once it, and what they had queued, is written. Nothing is
// published when no stream listens under key.
func (h *Hub[N]) End(key string, final N) {
	h.mu.Lock()
	defer h.mu.Unlock()
	views := h.byKey[key]
	if h.closed || len(views) == 0 {
		return
	}
	h.opening()
	h.window = append(h.window, final)
	h.marks = append(h.marks, mark[N]{at: len(h.window), ends: slices.Clone(views)})
}

// opening notes when a window opens, and wakes the loop to time it.
func (h *Hub[N]) opening() {
	if len(h.window) == 0 && len(h.marks) == 0 {
		h.windowAt = time.Now()
		h.signal()
	}
}

// closeWindow closes the open window before its time, to be sent at
// once; the next notification opens a new one.
func (h *Hub[N]) closeWindow() {
	if len(h.window) > 0 || len(h.marks) > 0 {
		h.ready = append(h.ready, batch[N]{h.window, h.marks})
		h.window, h.marks = nil, nil
	}
	h.signal()
}

func (h *Hub[N]) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// LastID is the id of the last frame delivered.
func (h *Hub[N]) LastID() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Subscribe opens a stream of sub.Topic, with what it missed since
// sub.LastEventID queued first when it resumes. Write it with Serve.
func (h *Hub[N]) Subscribe(sub Subscription[N]) (*Stream, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if len(h.streams) >= h.cfg.MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	v := h.views[sub.Topic]
	if v == nil {
		v = &view[N]{hub: h, topic: sub.Topic, subs: make(map[*Stream]struct{})}
		h.views[sub.Topic] = v
		key := sub.Topic.Key()
		h.byKey[key] = append(h.byKey[key], v)
	}
	s := &Stream{core: h.core, view: v, name: strings.Clone(sub.Name)}
	if sub.Resume {
		s.queue = h.replay(sub.Topic, sub.Since, sub.LastEventID)
	}
	v.subs[s] = struct{}{}
	h.streams[s] = struct{}{}
	h.running.Add(1)
	return s, nil
}

// unsubscribe removes a stream that has ended, and tells the source.
func (h *Hub[N]) unsubscribe(s *Stream, v *view[N]) {
	h.mu.Lock()
	delete(h.streams, s)
	delete(v.subs, s)
	if len(v.subs) == 0 && h.views[v.topic] == v {
		h.dropView(v)
	}
	h.mu.Unlock()
	h.src.Left(v.topic)
}

// dropView stops routing to v. h.mu is held.
func (h *Hub[N]) dropView(v *view[N]) {
	delete(h.views, v.topic)
	key := v.topic.Key()
	views := slices.DeleteFunc(h.byKey[key], func(c *view[N]) bool { return c == v })
	if len(views) == 0 {
		delete(h.byKey, key)
	} else {
		h.byKey[key] = views
	}
}

// endViews ends the streams of views whose topic's key went away.
func (h *Hub[N]) endViews(views []*view[N]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range views {
		if h.views[v.topic] == v {
			h.dropView(v)
		}
		for s := range v.subs {
			s.finish(endRemoved)
		}
	}
}

// Stats returns the hub's counters.
func (h *Hub[N]) Stats() Stats {
	h.mu.Lock()
	s := Stats{Subscribers: len(h.streams), Frames: h.frames, CutOff: h.cutOff}
	h.mu.Unlock()
	s.TakenOver = h.wires.streams()
	return s
}

// Close ends every stream (what was published before, what is queued,
// then a closing comment and the end of the response), stops the hub and
// waits until every goroutine of it and every stream it served have
// returned. It may be called more than once.
func (h *Hub[N]) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.wait()
		return nil
	}
	h.closed = true
	h.mu.Unlock()

	// The open window is sent now rather than lost: a client that has no
	// event yet has no Last-Event-ID to learn of it by later.
	close(h.stop)
	h.loopDone.Wait()
	h.flush()

	h.mu.Lock()
	streams := make([]*Stream, 0, len(h.streams))
	for s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	for _, s := range streams {
		s.interrupt()
		s.finish(endClosing)
	}
	h.wait()
	err := h.transport.Close()
	h.mu.Lock()
	h.history, h.window, h.marks, h.ready = nil, nil, nil, nil
	h.mu.Unlock()
	return err
}

// flush sends every window there is, due or not. The loop has stopped.
func (h *Hub[N]) flush() {
	for {
		h.mu.Lock()
		h.closeWindow()
		b, ok, _ := h.due(time.Now())
		h.mu.Unlock()
		if !ok {
			return
		}
		h.send(b.window, b.marks)
	}
}

func (h *Hub[N]) wait() {
	h.loopDone.Wait()
	h.running.Wait()
	h.wires.close()
}

// run sends each batch window once it is due, until Close.
func (h *Hub[N]) run() {
	defer h.loopDone.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-h.wake:
		case <-timer.C:
		}
		for {
			h.mu.Lock()
			b, ok, wait := h.due(time.Now())
			h.mu.Unlock()
			if !ok {
				timer.Reset(wait)
				break
			}
			h.send(b.window, b.marks)
		}
	}
}

// due takes the next window to send, if one is due, or tells how long
// until the open one is.
func (h *Hub[N]) due(now time.Time) (batch[N], bool, time.Duration) {
	if len(h.ready) == 0 {
		if len(h.window) == 0 && len(h.marks) == 0 {
			return batch[N]{}, false, time.Hour
		}
		if end := h.windowAt.Add(h.cfg.Batch); h.cfg.Batch >= 0 && now.Before(end) {
			return batch[N]{}, false, end.Sub(now)
		}
		h.closeWindow()
	}
	b := h.ready[0]
	h.ready[0] = batch[N]{}
	h.ready = h.ready[1:]
	return b, true, 0
}

// send sends a window's notifications as frames of at most MaxFrame,
// with its overflows and ends in their places. Only the loop calls it, so
// frames leave in order.
func (h *Hub[N]) send(window []N, marks []mark[N]) {
	from := 0
	for _, m := range marks {
		h.sendFrames(window[from:m.at])
		from = m.at
		if m.overflow != nil {
			h.sendFrame(m.overflow)
		}
		if m.ends != nil {
			h.endViews(m.ends)
		}
	}
	h.sendFrames(window[from:])
}

func (h *Hub[N]) sendFrames(ns []N) {
	for len(ns) > 0 {
		k := min(len(ns), MaxFrame)
		h.sendFrame(&Frame[N]{Notifications: ns[:k:k]})
		ns = ns[k:]
	}
}

func (h *Hub[N]) sendFrame(f *Frame[N]) {
	if err := h.transport.Send(f); err != nil {
		h.log.Error("sending a frame", zap.Int("notifications", len(f.Notifications)), zap.String("overflow", f.Overflow), zap.Error(err))
	}
}

// deliver hands a numbered frame to the streams it concerns and keeps it
// in the history. The transport calls it, in id order.
func (h *Hub[N]) deliver(f *Frame[N]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f.ID <= h.last {
		return // delivered already
	}
	h.last = f.ID
	h.frames++
	h.remember(f)
	if f.Overflow != "" {
		h.overflowTo(f)
	} else {
		h.fanOut(f)
	}
}
