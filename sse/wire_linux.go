//go:build linux

package sse

import (
	"errors"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// A stream over HTTP/1.x on a plain connection is taken over from net/http
// once its header and first comment are sent: the handler returns, and with
// it go the request's goroutine, net/http's background reader and its
// buffers, leaving about a kilobyte per idle stream. From then on the
// hub's wires write the stream:
//
//   - a few writer goroutines write each event, encoded once, to every
//     connection that has something queued, without ever waiting: a write
//     the socket does not take at once is left to that connection's slow
//     path, a goroutine that exists only while the client is behind and
//     writes under the usual deadline, so that a slow client never delays
//     the others and is cut off by its queue as before;
//   - one goroutine waits, through an epoll instance of its own, for the
//     clients that hang up, so that a departed client frees its place at
//     once rather than at the next write;
//   - one goroutine sends the keep-alive comments, spread over the
//     interval in keepaliveGroups groups.
//
// An HTTP/1.1 response keeps the chunked framing net/http gave it (it has
// no Content-Length): each event carries its chunk header, and the
// stream ends with the last chunk, so a client tells a clean end from a
// cut connection. HTTP/1.0 has no chunks; its stream ends when the
// connection closes. Either way the connection is closed after the
// stream, as its header (Connection: close) told the client.

// keepaliveGroups is the number of groups whose keep-alive comments are
// sent one after the other over the keep-alive interval.
const keepaliveGroups = 16

// writerBatch is how many streams a writer takes from the ready list at a
// time.
const writerBatch = 64

// maxIovecs bounds the buffers of one writev (the kernel's limit is 1024).
const maxIovecs = 512

var lastChunk = []byte("0\r\n\r\n")

// errClientLeft is the cause logged for a client that hung up.
var errClientLeft = errors.New("the client closed the connection")

// wire is a stream's connection once the hub has taken it over.
type wire struct {
	conn    net.Conn
	raw     syscall.RawConn // nil when conn has no descriptor: every write then waits in the slow path
	chunked bool            // HTTP/1.1: events are chunks, the end is the last chunk
	token   uint64          // the departure watch's key; 0 when not watched
	group   int             // keep-alive group

	// Guarded by the Stream's mu.
	busy   bool // a writer or the slow path owns conn
	slow   bool // the slow path is writing, under a deadline
	ping   bool // a keep-alive comment is due
	closed bool

	shutOnce sync.Once
}

// bytes is what goes on the wire for e.
func (w *wire) bytes(e event) []byte {
	if w.chunked {
		return e.chunk
	}
	return e.text()
}

// appendWrites appends to bufs what to write for the taken queue.
func (w *wire) appendWrites(bufs [][]byte, events []event, end endReason, last event, ping bool) [][]byte {
	for _, e := range events {
		bufs = append(bufs, w.bytes(e))
	}
	if last.chunk != nil {
		bufs = append(bufs, w.bytes(last))
	}
	if end == endClosing {
		bufs = append(bufs, w.bytes(closingComment))
	}
	if ping && len(bufs) == 0 && end == endNone {
		bufs = append(bufs, w.bytes(keepalive))
	}
	if end != endNone && w.chunked {
		bufs = append(bufs, lastChunk)
	}
	return bufs
}

// writeNow writes what the socket takes without waiting, consuming bufs.
// It returns what is left: nothing, or the rest when the socket buffer is
// full.
func (w *wire) writeNow(bufs [][]byte) ([][]byte, error) {
	var werr error
	err := w.raw.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			var k int
			var e error
			if len(bufs) == 1 {
				k, e = unix.Write(int(fd), bufs[0])
			} else {
				k, e = unix.Writev(int(fd), bufs[:min(len(bufs), maxIovecs)])
			}
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return true
			case e != nil:
				werr = e
				return true
			}
			for k > 0 && len(bufs) > 0 {
				if k < len(bufs[0]) {
					bufs[0] = bufs[0][k:]
					k = 0
					break
				}
				k -= len(bufs[0])
				bufs = bufs[1:]
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return bufs, err
}

// takeLocked takes what there is to write, with s.mu held. ok is false
// when there is nothing.
func (s *Stream) takeLocked() (events []event, end endReason, last event, ping, ok bool) {
	w := s.wire
	events, end, last, ping = s.queue, s.end, s.last, w.ping
	s.queue, w.ping = nil, false
	if end != endNone {
		s.last = event{}
	}
	return events, end, last, ping, len(events) > 0 || end != endNone || ping
}

// wires writes the streams whose connections the hub took over.
type wires struct {
	log   *zap.Logger
	ep    *os.File // the epoll instance watching for departures
	epRaw syscall.RawConn
	wake  chan struct{}
	stop  chan struct{}
	done  sync.WaitGroup // every goroutine of the hub, slow paths included
	once  sync.Once

	mu      sync.Mutex
	ready   []*Stream // streams with something to write, from head on
	head    int
	byToken map[uint64]*Stream
	groups  [keepaliveGroups]map[*Stream]struct{}
	turn    int    // the next stream's keep-alive group
	tokens  uint64 // the last token given
	count   int
}

func newWires(c *core) (*wires, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	epRaw, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	workers := max(1, min(runtime.GOMAXPROCS(0), 8))
	h := &wires{
		log:     c.log,
		ep:      ep,
		epRaw:   epRaw,
		wake:    make(chan struct{}, workers),
		stop:    make(chan struct{}),
		byToken: make(map[uint64]*Stream),
	}
	for i := range h.groups {
		h.groups[i] = make(map[*Stream]struct{})
	}
	h.done.Add(workers + 2)
	for range workers {
		go h.write()
	}
	go h.keepAlive(c.cfg.Keepalive)
	go h.watchDepartures()
	return h, nil
}

// close stops the hub once every stream has ended.
func (h *wires) close() {
	h.once.Do(func() {
		close(h.stop)
		h.ep.Close()
	})
	h.done.Wait()
}

// streams is the number of streams on taken-over connections.
func (h *wires) streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// takeOver hijacks the connection under w. It goes past the wrappers of
// the handler chain, which have passed the header and the first comment
// on and have no business with the rest, to the server's own writer. It
// declines a response that a handler in front encodes, since the stream
// would then be written unencoded.
func takeOver(w http.ResponseWriter) (net.Conn, bool) {
	if w.Header().Get("Content-Encoding") != "" {
		return nil, false
	}
	hj, ok := serverWriter(w).(http.Hijacker)
	if !ok {
		return nil, false
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return nil, false
	}
	// Whatever the client sent after its request is dropped with the
	// buffers: an event stream reads nothing.
	return conn, true
}

// add takes the stream of s onto conn, whose response header and first
// comment are sent.
func (h *wires) add(s *Stream, conn net.Conn, chunked bool) {
	w := &wire{conn: conn, chunked: chunked, busy: true}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.raw = raw
		}
	}
	s.mu.Lock()
	s.wire = w
	s.rc, s.server = nil, nil
	s.mu.Unlock()

	h.mu.Lock()
	h.count++
	w.group = h.turn
	h.turn = (h.turn + 1) % keepaliveGroups
	h.groups[w.group][s] = struct{}{}
	if w.raw != nil {
		h.tokens++
		w.token = h.tokens
		h.byToken[w.token] = s
	}
	h.mu.Unlock()
	if w.raw != nil && !h.watch(w) {
		h.mu.Lock()
		delete(h.byToken, w.token)
		h.mu.Unlock()
		w.token = 0
	}
	// Written at once: replayed events, or the end if it came already.
	h.schedule(s)
}

// watch registers w for the departure of its client: the peer's shutdown
// or reset. Once only, as the stream ends on the first report.
func (h *wires) watch(w *wire) bool {
	ok := false
	_ = w.raw.Control(func(fd uintptr) {
		_ = h.epRaw.Control(func(epfd uintptr) {
			ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(w.token)), Pad: int32(uint32(w.token >> 32))}
			ok = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, int(fd), &ev) == nil
		})
	})
	return ok
}

func (h *wires) unwatch(w *wire) {
	_ = w.raw.Control(func(fd uintptr) {
		_ = h.epRaw.Control(func(epfd uintptr) {
			_ = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_DEL, int(fd), nil)
		})
	})
}

// watchDepartures ends the streams whose clients hung up.
func (h *wires) watchDepartures() {
	defer h.done.Done()
	evs := make([]unix.EpollEvent, 256)
	for {
		var k int
		var werr error
		err := h.epRaw.Read(func(epfd uintptr) bool {
			for {
				k, werr = unix.EpollWait(int(epfd), evs, 0)
				if werr != unix.EINTR {
					break
				}
			}
			return k > 0 || werr != nil
		})
		if err != nil {
			return // closed
		}
		if werr != nil {
			h.log.Error("waiting for departed clients; they are now noticed at their next write", zap.Error(werr))
			return
		}
		for _, ev := range evs[:k] {
			token := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			h.mu.Lock()
			s := h.byToken[token]
			h.mu.Unlock()
			if s != nil {
				h.shut(s, errClientLeft)
			}
		}
	}
}

// schedule queues s for a writer. The caller set s.wire.busy.
func (h *wires) schedule(s *Stream) {
	h.mu.Lock()
	h.ready = append(h.ready, s)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// write is a writer: it drains the ready list, a batch at a time.
func (h *wires) write() {
	defer h.done.Done()
	batch := make([]*Stream, 0, writerBatch)
	var bufs [][]byte
	for {
		select {
		case <-h.stop:
			return
		case <-h.wake:
		}
		for {
			h.mu.Lock()
			k := min(len(h.ready)-h.head, writerBatch)
			batch = append(batch[:0], h.ready[h.head:h.head+k]...)
			clear(h.ready[h.head : h.head+k])
			h.head += k
			more := h.head < len(h.ready)
			if !more {
				h.ready, h.head = h.ready[:0], 0
			}
			h.mu.Unlock()
			if k == 0 {
				break
			}
			if more {
				select {
				case h.wake <- struct{}{}: // another writer may join in
				default:
				}
			}
			for _, s := range batch {
				bufs = h.drain(s, bufs[:0])
				clear(bufs)
			}
			clear(batch)
		}
	}
}

// drain writes what s has queued without waiting, and hands s to its slow
// path if the socket does not take it all.
func (h *wires) drain(s *Stream, bufs [][]byte) [][]byte {
	w := s.wire
	for {
		s.mu.Lock()
		if w.closed {
			w.busy = false
			s.mu.Unlock()
			return bufs
		}
		events, end, last, ping, ok := s.takeLocked()
		if !ok {
			w.busy = false
			s.mu.Unlock()
			return bufs
		}
		s.mu.Unlock()
		bufs = w.appendWrites(bufs[:0], events, end, last, ping)
		clear(events)
		if w.raw == nil {
			h.goSlow(s, slices.Clone(bufs), end != endNone)
			return bufs
		}
		rest, err := w.writeNow(bufs)
		if err != nil {
			h.shut(s, err)
			return bufs
		}
		if len(rest) > 0 {
			h.goSlow(s, slices.Clone(rest), end != endNone)
			return bufs
		}
		if end != endNone {
			h.shut(s, nil)
			return bufs
		}
	}
}

// goSlow starts the slow path of s with bufs left to write; ends tells
// that the stream ends with them.
func (h *wires) goSlow(s *Stream, bufs [][]byte, ends bool) {
	w := s.wire
	s.mu.Lock()
	w.slow = true
	s.setWireDeadlineLocked()
	s.mu.Unlock()
	h.done.Add(1)
	go h.slowPath(s, bufs, ends)
}

func (s *Stream) setWireDeadlineLocked() {
	d := writeTimeout
	if s.interrupted {
		d = closeTimeout
	}
	_ = s.wire.conn.SetWriteDeadline(time.Now().Add(d))
}

// slowPath writes to a client that did not take a write at once, waiting
// for it under a deadline, until its queue is empty again and the writers
// can take it back.
func (h *wires) slowPath(s *Stream, bufs [][]byte, ends bool) {
	defer h.done.Done()
	w := s.wire
	for {
		nb := net.Buffers(bufs)
		if _, err := nb.WriteTo(w.conn); err != nil {
			h.shut(s, err)
			return
		}
		if ends {
			h.shut(s, nil)
			return
		}
		s.mu.Lock()
		if w.closed {
			s.mu.Unlock()
			return
		}
		events, end, last, ping, ok := s.takeLocked()
		if !ok {
			w.slow, w.busy = false, false
			_ = w.conn.SetWriteDeadline(time.Time{})
			s.mu.Unlock()
			return
		}
		s.setWireDeadlineLocked()
		s.mu.Unlock()
		bufs = w.appendWrites(bufs[:0], events, end, last, ping)
		ends = end != endNone
	}
}

// shut ends the stream of s: the connection is closed, the stream too. Whoever sees the end first calls it; later calls do nothing.
func (h *wires) shut(s *Stream, cause error) {
	w := s.wire
	w.shutOnce.Do(func() {
		s.mu.Lock()
		w.closed = true
		if s.end == endNone {
			s.end = endGone
		}
		clear(s.queue)
		s.queue = nil
		s.mu.Unlock()

		h.mu.Lock()
		h.count--
		delete(h.groups[w.group], s)
		if w.token != 0 {
			delete(h.byToken, w.token)
		}
		h.mu.Unlock()
		if w.token != 0 {
			h.unwatch(w)
		}
		if ce := h.log.Check(zap.DebugLevel, "stream closed"); ce != nil {
			ce.Write(zap.String("stream", s.name), zap.String("remote_addr", w.conn.RemoteAddr().String()), zap.NamedError("cause", cause))
		}
		_ = w.conn.Close()
		s.Close()
	})
}

// keepAlive sends the keep-alive comments, one group of streams after the
// other, so that each stream gets one every interval.
func (h *wires) keepAlive(interval time.Duration) {
	defer h.done.Done()
	t := time.NewTicker(max(interval/keepaliveGroups, time.Millisecond))
	defer t.Stop()
	var due []*Stream
	for g := 0; ; g = (g + 1) % keepaliveGroups {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.mu.Lock()
		for s := range h.groups[g] {
			due = append(due, s)
		}
		h.mu.Unlock()
		for _, s := range due {
			s.mu.Lock()
			s.wire.ping = true
			k := s.kickLocked()
			s.mu.Unlock()
			if k {
				h.schedule(s)
			}
		}
		clear(due)
		due = due[:0]
	}
}
