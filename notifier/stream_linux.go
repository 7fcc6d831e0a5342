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
)

// Subscription is one stream's place in the hub: a bounded queue of
// encoded SSE events, filled by the Notifier without ever blocking and
// drained by the goroutine serving the stream.
type Subscription struct {
	n    *Notifier
	node *node // guarded by n.mu
	rec  bool
	view *view
	max  int
	wake chan struct{} // cap 1

	mu          sync.Mutex
	queue       [][]byte
	end         endReason
	final       []byte
	rc          *http.ResponseController
	interrupted bool
	closeOnce   sync.Once
}

func (s *Subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// enqueue adds one encoded event; a full queue cuts the subscriber off.
// It is called with n.mu held.
func (s *Subscription) enqueue(msg []byte, id uint64) {
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
		s.mu.Unlock()
		s.n.stats.CutOff++
		s.n.logCut(s)
		s.signal()
		return
	}
	s.queue = append(s.queue, msg)
	s.mu.Unlock()
	s.signal()
}

// finish ends the stream once what is queued has been written, followed
// by final.
func (s *Subscription) finish(r endReason, final []byte) {
	s.mu.Lock()
	if s.end == endNone {
		s.end, s.final = r, final
	}
	s.mu.Unlock()
	s.signal()
}

// take hands the writer everything queued.
func (s *Subscription) take() (msgs [][]byte, end endReason, final []byte) {
	s.mu.Lock()
	msgs = s.queue
	s.queue = nil
	end, final = s.end, s.final
	if end != endNone {
		s.final = nil
	}
	s.mu.Unlock()
	return msgs, end, final
}

// interrupt shortens the deadline of the write in progress so that Close
// is not held up by a client that stopped reading.
func (s *Subscription) interrupt() {
	s.mu.Lock()
	s.interrupted = true
	if s.rc != nil {
		_ = s.rc.SetWriteDeadline(time.Now().Add(closeTimeout))
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

// Close unregisters the subscription. The stream's goroutine calls it
// when it returns.
func (s *Subscription) Close() {
	s.closeOnce.Do(func() {
		s.n.unsubscribe(s)
		s.n.streams.Done()
	})
}

var (
	openingComment = []byte(": watching\n\n")
	keepalive      = []byte(": keepalive\n\n")
	closingComment = []byte(": closing\n\n")
)

// serve writes the stream until the client leaves, the subscription ends
// or the Notifier closes.
func (s *Subscription) serve(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	s.mu.Lock()
	s.rc = rc
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.rc = nil
		s.mu.Unlock()
		_ = rc.SetWriteDeadline(time.Time{})
	}()

	s.setWriteDeadline()
	if _, err := w.Write(openingComment); err != nil {
		return err
	}
	if err := rc.Flush(); err != nil {
		return err
	}
	ticker := time.NewTicker(s.n.cfg.Keepalive)
	defer ticker.Stop()
	for {
		msgs, end, final := s.take()
		if len(msgs) > 0 || final != nil || end == endClosing {
			s.setWriteDeadline()
			for _, m := range msgs {
				if _, err := w.Write(m); err != nil {
					return err
				}
			}
			if final != nil {
				if _, err := w.Write(final); err != nil {
					return err
				}
			}
			if end == endClosing {
				if _, err := w.Write(closingComment); err != nil {
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
			if _, err := w.Write(keepalive); err != nil {
				return err
			}
			if err := rc.Flush(); err != nil {
				return err
			}
		}
	}
}
