//go:build linux

package notifier

import (
	"net/http"
	"sync"
	"time"
)

type endReason uint8

const (
	endNone    endReason = iota
	endCut               // queue overflowed: an overflow event, then the end
	endRemoved           // the watched directory is gone: the queue, then the end
	endClosing           // the Notifier is closing: the queue, then the end
	endGone              // the connection is closed: nothing more is written
)

// Subscription is one stream's place in the hub: a bounded queue of
// encoded SSE events, filled by the Notifier without ever blocking and
// drained by whoever writes the stream: the goroutine serving the request
// (HTTP/2, HTTP/3, TLS), or the writers of the Notifier's wires once it
// has taken the connection over (HTTP/1.x over plain TCP).
type Subscription struct {
	n    *Notifier
	node *node // guarded by n.mu
	rec  bool
	view *view
	max  int

	mu          sync.Mutex
	wake        chan struct{} // cap 1; the serving goroutine's, until taken over
	queue       []payload
	end         endReason
	final       payload                  // sent after the queue when the stream ends; may be empty
	rc          *http.ResponseController // the serving goroutine's, through the handler chain
	server      *http.ResponseController // the server's own writer's, safe from other goroutines
	interrupted bool
	wire        *wire // set once the connection is taken over; never reset
	closeOnce   sync.Once
}

// kickLocked tells the stream's writer there is something to write. It
// reports whether s must be handed to the wire writers once s.mu is
// released.
func (s *Subscription) kickLocked() bool {
	if w := s.wire; w != nil {
		if w.busy || w.closed {
			return false
		}
		w.busy = true
		return true
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return false
}

// kicked hands s to the wire writers if kickLocked said so.
func (s *Subscription) kicked(schedule bool) {
	if schedule {
		s.n.wires.schedule(s)
	}
}

// enqueue adds one encoded event; a full queue cuts the subscriber off.
// It is called with n.mu held.
func (s *Subscription) enqueue(msg payload, id uint64) {
	s.mu.Lock()
	if s.end != endNone {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.max {
		s.end = endCut
		s.final = overflowMessage(id, reasonQueue)
		clear(s.queue)
		s.queue = nil
		k := s.kickLocked()
		s.mu.Unlock()
		s.n.stats.CutOff++
		s.n.logCut(s)
		s.kicked(k)
		return
	}
	s.queue = append(s.queue, msg)
	k := s.kickLocked()
	s.mu.Unlock()
	s.kicked(k)
}

// finish ends the stream once what is queued has been written.
func (s *Subscription) finish(r endReason) {
	s.mu.Lock()
	if s.end == endNone {
		s.end = r
	}
	k := s.kickLocked()
	s.mu.Unlock()
	s.kicked(k)
}

// take hands the writer everything queued.
func (s *Subscription) take() (msgs []payload, end endReason, final payload) {
	s.mu.Lock()
	msgs = s.queue
	s.queue = nil
	end, final = s.end, s.final
	if end != endNone {
		s.final = payload{}
	}
	s.mu.Unlock()
	return msgs, end, final
}

// interrupt shortens the deadline of the write in progress so that Close
// is not held up by a client that stopped reading.
func (s *Subscription) interrupt() {
	s.mu.Lock()
	s.interrupted = true
	if s.server != nil {
		// Not through the handler chain, whose writers may not expect a
		// call from another goroutine than the request's.
		_ = s.server.SetWriteDeadline(time.Now().Add(closeTimeout))
	}
	if w := s.wire; w != nil && w.slow {
		_ = w.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
	}
	s.mu.Unlock()
}

func (s *Subscription) setWriteDeadline() {
	s.mu.Lock()
	d := writeTimeout
	if s.interrupted {
		d = closeTimeout
	}
	if s.rc != nil {
		_ = s.rc.SetWriteDeadline(time.Now().Add(d))
	}
	s.mu.Unlock()
}

// Close unregisters the subscription. Whoever ends the stream calls it:
// the serving goroutine when it returns, or the wire writers.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.n.unsubscribe(s)
		s.n.streams.Done()
	})
}

var (
	openingComment = []byte(": watching\n\n")
	keepalive      = textPayload(": keepalive\n\n")
	closingComment = textPayload(": closing\n\n")
)

// serverWriter is the writer under w's wrappers: the server's own.
func serverWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// open sends the response header and the first comment. A stream to be
// taken over says that its connection ends with it: it is closed then.
func (s *Subscription) open(w http.ResponseWriter, takeOver bool) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	if takeOver {
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	s.mu.Lock()
	s.rc = rc
	s.server = http.NewResponseController(serverWriter(w))
	s.mu.Unlock()
	s.setWriteDeadline()
	if _, err := w.Write(openingComment); err != nil {
		return err
	}
	return rc.Flush()
}

// serve writes the stream until the client leaves, the subscription ends
// or the Notifier closes. open has been called.
func (s *Subscription) serve(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	defer func() {
		s.mu.Lock()
		s.rc, s.server = nil, nil
		s.mu.Unlock()
		_ = rc.SetWriteDeadline(time.Time{})
	}()
	ticker := time.NewTicker(s.n.cfg.Keepalive)
	defer ticker.Stop()
	for {
		msgs, end, final := s.take()
		if len(msgs) > 0 || final.chunk != nil || end == endClosing {
			s.setWriteDeadline()
			for _, m := range msgs {
				if _, err := w.Write(m.event()); err != nil {
					return err
				}
			}
			if final.chunk != nil {
				if _, err := w.Write(final.event()); err != nil {
					return err
				}
			}
			if end == endClosing {
				if _, err := w.Write(closingComment.event()); err != nil {
					return err
				}
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
		if end != endNone {
			return nil
		}
		select {
		case <-r.Context().Done():
			return r.Context().Err()
		case <-s.wake:
		case <-ticker.C:
			s.setWriteDeadline()
			if _, err := w.Write(keepalive.event()); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
	}
}
