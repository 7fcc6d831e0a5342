package sse

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

type endReason uint8

const (
	endNone    endReason = iota
	endCut               // queue overflowed: an overflow event, then the end
	endRemoved           // the topic's key went away: the queue, then the end
	endClosing           // the hub is closing: the queue, a closing comment, then the end
	endGone              // the connection is closed: nothing more is written
)

// Stream is one subscriber's place in the hub: a bounded queue of encoded
// events, filled by the hub without ever blocking and drained by whoever
// writes the stream: the goroutine serving the request (HTTP/2, HTTP/3,
// TLS), or the hub's writers once it has taken the connection over
// (HTTP/1.x over plain TCP).
type Stream struct {
	core *core
	view interface{ leave(*Stream) }
	name string

	mu          sync.Mutex
	wake        chan struct{} // cap 1; made by the serving goroutine, if any
	queue       []event
	end         endReason
	last        event                    // sent after the queue when the stream ends; may be empty
	rc          *http.ResponseController // the serving goroutine's, through the handler chain
	server      *http.ResponseController // the server's own writer's, safe from other goroutines
	interrupted bool
	wire        *wire // set once the connection is taken over; never reset
	closeOnce   sync.Once
}

// LastEventID returns the Last-Event-ID a reconnecting client sent, and
// whether it sent one.
func LastEventID(r *http.Request) (string, bool) {
	v := r.Header.Values("Last-Event-ID")
	if len(v) == 0 {
		return "", false
	}
	return strings.TrimSpace(v[0]), true
}

// Serve writes the stream as the response to r until it ends, the client
// leaves or the hub closes, and then closes it. Over HTTP/1.x on a plain
// connection, the hub's writers take the connection over once the header
// and the first comment are sent, and Serve returns at once; HTTP/2 and
// HTTP/3 streams share their connection, and a TLS connection needs a
// goroutine to write through, so those are written by the caller's.
func (s *Stream) Serve(w http.ResponseWriter, r *http.Request) {
	plain := r.ProtoMajor == 1 && r.TLS == nil
	if err := s.open(w, plain); err != nil {
		s.Close()
		s.logClosed(r.RemoteAddr, err)
		return
	}
	if plain {
		if conn, ok := takeOver(w); ok {
			s.core.wires.add(s, conn, r.ProtoAtLeast(1, 1))
			return
		}
	}
	defer s.Close()
	s.logClosed(r.RemoteAddr, s.serve(w, r))
}

func (s *Stream) logClosed(remote string, cause error) {
	if ce := s.core.log.Check(zap.DebugLevel, "stream closed"); ce != nil {
		ce.Write(zap.String("stream", s.name), zap.String("remote_addr", remote), zap.NamedError("cause", cause))
	}
}

// Close unregisters the stream. Whoever ends it calls Close: Serve, or
// the hub's writers; a stream that is never served must be closed too.
func (s *Stream) Close() {
	s.closeOnce.Do(func() {
		s.view.leave(s)
		s.core.running.Done()
	})
}

// kickLocked tells the stream's writer there is something to write. It
// reports whether s must be handed to the wire writers once s.mu is
// released.
func (s *Stream) kickLocked() bool {
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
func (s *Stream) kicked(schedule bool) {
	if schedule {
		s.core.wires.schedule(s)
	}
}

// enqueue adds one encoded event; a full queue cuts the subscriber off.
// The hub's mu is held.
func (s *Stream) enqueue(e event, id uint64) {
	s.mu.Lock()
	if s.end != endNone {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.core.cfg.Queue {
		s.end = endCut
		s.last = overflowEvent(id, ReasonSubscriberQueue)
		clear(s.queue)
		s.queue = nil
		k := s.kickLocked()
		s.mu.Unlock()
		s.core.cutOff++
		s.core.log.Warn("subscriber fell behind and was cut off", zap.String("stream", s.name), zap.Int("queue", s.core.cfg.Queue))
		s.kicked(k)
		return
	}
	s.queue = append(s.queue, e)
	k := s.kickLocked()
	s.mu.Unlock()
	s.kicked(k)
}

// finish ends the stream once what is queued has been written.
func (s *Stream) finish(r endReason) {
	s.mu.Lock()
	if s.end == endNone {
		s.end = r
	}
	k := s.kickLocked()
	s.mu.Unlock()
	s.kicked(k)
}

// take hands the writer everything queued.
func (s *Stream) take() (events []event, end endReason, last event) {
	s.mu.Lock()
	events = s.queue
	s.queue = nil
	end, last = s.end, s.last
	if end != endNone {
		s.last = event{}
	}
	s.mu.Unlock()
	return events, end, last
}

// interrupt shortens the deadline of the write in progress so that Close
// is not held up by a client that stopped reading.
func (s *Stream) interrupt() {
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

func (s *Stream) setWriteDeadline() {
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
func (s *Stream) open(w http.ResponseWriter, takeOver bool) error {
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

// serve writes the stream until the client leaves, the stream ends or the
// hub closes. open has been called.
func (s *Stream) serve(w http.ResponseWriter, r *http.Request) error {
	rc := http.NewResponseController(w)
	s.mu.Lock()
	s.wake = make(chan struct{}, 1)
	wake := s.wake
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.rc, s.server = nil, nil
		s.mu.Unlock()
		_ = rc.SetWriteDeadline(time.Time{})
	}()
	ticker := time.NewTicker(s.core.cfg.Keepalive)
	defer ticker.Stop()
	for {
		events, end, last := s.take()
		if len(events) > 0 || last.chunk != nil || end == endClosing {
			s.setWriteDeadline()
			for _, e := range events {
				if _, err := w.Write(e.text()); err != nil {
					return err
				}
			}
			if last.chunk != nil {
				if _, err := w.Write(last.text()); err != nil {
					return err
				}
			}
			if end == endClosing {
				if _, err := w.Write(closingComment.text()); err != nil {
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
		case <-wake:
		case <-ticker.C:
			s.setWriteDeadline()
			if _, err := w.Write(keepalive.text()); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
	}
}
