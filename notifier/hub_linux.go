//go:build linux

package notifier

import (
	"strconv"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// dirKey identifies a directory by device and inode.
type dirKey struct{ dev, ino uint64 }

// link is one step of a change's chain: a directory or the entry itself.
type link struct {
	dev, ino uint64
	name     string // name within the previous link
}

// change is one notification before it is made relative to a subscriber:
// chain runs from the topmost indexed ancestor down to the entry (for
// self_removed, chain is the removed directory alone).
type change struct {
	typ   Type
	chain []link
}

// frame is one sealed batch window: the unit of ids and of history.
type frame struct {
	id       uint64
	changes  []change
	overflow string // non-empty: an overflow marker instead of changes
	scope    []link // overflow only: nil for everyone, else the directory that lost events
}

// Overflow reasons, sent as the data of an `event: overflow`.
const (
	reasonKernelQueue = "kernel_queue"     // the kernel dropped events
	reasonQueue       = "subscriber_queue" // this subscriber fell too far behind
	reasonHistory     = "history"          // Last-Event-ID is not in history
	reasonWatchLimit  = "watch_limit"      // a new subdirectory could not be watched
)

// view is the set of subscriptions that see the same stream: same
// directory, recursion and filter. A payload is encoded once per view.
type view struct {
	key     dirKey
	rec     bool
	filter  Filter
	subs    map[*Subscription]struct{}
	pending []match
}

type match struct {
	c *change
	k int // position of the view's directory in c.chain
}

// matches reports whether the change concerns a view on the directory at
// chain position k.
func (v *view) matches(c *change, k int) bool {
	last := len(c.chain) - 1
	if c.typ == SelfRemoved {
		return k == last && v.filter.Has(SelfRemoved)
	}
	if k > last-1 || (!v.rec && k != last-1) {
		return false
	}
	return v.filter.Has(c.typ)
}

// affected reports whether an overflow frame concerns v.
func (v *view) affected(f *frame) bool {
	if f.scope == nil {
		return true
	}
	last := len(f.scope) - 1
	for k, l := range f.scope {
		if l.dev == v.key.dev && l.ino == v.key.ino {
			return k == last || v.rec
		}
	}
	return false
}

// seal closes the current batch window into a frame and hands it to every
// subscriber it concerns.
func (n *Notifier) seal() {
	if len(n.frame) > 0 {
		n.seq++
		f := &frame{id: n.seq, changes: n.frame}
		n.frame = nil
		n.remember(f)
		n.fanout(f)
	}
	if len(n.ending) > 0 {
		// Their directory is gone; the self_removed just sent was the last.
		for _, v := range n.ending {
			for s := range v.subs {
				s.finish(endRemoved)
				delete(n.subs, s)
			}
			n.dropView(v)
		}
		clear(n.ending)
		n.ending = n.ending[:0]
	}
}

// overflow seals what is pending and sends an overflow marker to the views
// in scope (nil: all), recording it in history for replays.
func (n *Notifier) overflow(reason string, scope []link) {
	n.seal()
	n.seq++
	f := &frame{id: n.seq, overflow: reason, scope: scope}
	n.remember(f)
	msg := overflowMessage(f.id, reason)
	for _, views := range n.byDir {
		for _, v := range views {
			if v.affected(f) {
				for s := range v.subs {
					s.enqueue(msg, f.id)
				}
			}
		}
	}
}

func (n *Notifier) remember(f *frame) {
	if len(n.history) < n.cfg.History {
		n.history = append(n.history, f)
		return
	}
	n.history[n.histAt] = f
	n.histAt = (n.histAt + 1) % len(n.history)
}

// historyFrom returns the retained frames with ids above after, oldest
// first, and whether every frame above after is still retained.
func (n *Notifier) historyFrom(after uint64) ([]*frame, bool) {
	var out []*frame
	complete := len(n.history) == 0 || after >= n.seq
	for i := range n.history {
		f := n.history[(n.histAt+i)%len(n.history)]
		if f.id == after+1 {
			complete = true
		}
		if f.id > after {
			out = append(out, f)
		}
	}
	return out, complete
}

func (n *Notifier) fanout(f *frame) {
	var touched []*view
	for i := range f.changes {
		c := &f.changes[i]
		for k, l := range c.chain {
			for _, v := range n.byDir[dirKey{l.dev, l.ino}] {
				if v.matches(c, k) {
					if len(v.pending) == 0 {
						touched = append(touched, v)
					}
					v.pending = append(v.pending, match{c, k})
				}
			}
		}
	}
	for _, v := range touched {
		msg := encodePayload(f.id, v.pending)
		clear(v.pending)
		v.pending = v.pending[:0]
		for s := range v.subs {
			s.enqueue(msg, f.id)
		}
	}
}

// replay builds the messages a new subscription on v missed since lastID.
func (n *Notifier) replay(v *view, x *node, lastID string) (msgs []payload) {
	id, err := strconv.ParseUint(lastID, 10, 64)
	if err != nil || id < n.base || id > n.seq {
		return []payload{overflowMessage(n.seq, reasonHistory)}
	}
	frames, complete := n.historyFrom(id)
	since := x.since
	if v.rec {
		since = x.recSince
	}
	if !complete || since > id {
		return []payload{overflowMessage(n.seq, reasonHistory)}
	}
	var pending []match
	for _, f := range frames {
		if f.overflow != "" {
			if v.affected(f) {
				msgs = append(msgs[:0], overflowMessage(f.id, f.overflow))
			}
			continue
		}
		pending = pending[:0]
		for i := range f.changes {
			c := &f.changes[i]
			for k, l := range c.chain {
				if l.dev == v.key.dev && l.ino == v.key.ino && v.matches(c, k) {
					pending = append(pending, match{c, k})
				}
			}
		}
		if len(pending) > 0 {
			msgs = append(msgs, encodePayload(f.id, pending))
		}
	}
	if len(msgs) > n.cfg.Queue {
		return []payload{overflowMessage(n.seq, reasonHistory)}
	}
	return msgs
}

// payload is one encoded SSE event or comment, held inside its HTTP/1.1
// chunk framing ("<hex length>\r\n" event "\r\n"): a connection the hub
// writes itself is sent the chunk as it is, a response framed by net/http
// the event alone. Encoding it once serves every subscriber of a view.
type payload struct {
	chunk []byte
	at    int // where the event begins in chunk
}

// chunkRoom is the space left before an event for its chunk header: up
// to 8 hex digits and CRLF.
const chunkRoom = 10

// newPayload starts a payload of about size bytes: append the event to the
// returned buffer, then call sealPayload.
func newPayload(size int) []byte { return make([]byte, chunkRoom, chunkRoom+size+2) }

// sealPayload frames b, started by newPayload, as one chunk.
func sealPayload(b []byte) payload {
	var hex [8]byte
	h := strconv.AppendUint(hex[:0], uint64(len(b)-chunkRoom), 16)
	at := chunkRoom - 2 - len(h)
	copy(b[at:], h)
	b[chunkRoom-2], b[chunkRoom-1] = '\r', '\n'
	b = append(b, '\r', '\n')
	return payload{chunk: b[at:], at: chunkRoom - at}
}

func textPayload(s string) payload { return sealPayload(append(newPayload(len(s)), s...)) }

// event is the SSE event without its chunk framing.
func (p payload) event() []byte { return p.chunk[p.at : len(p.chunk)-2] }

// encodePayload writes one SSE event: its id and the JSON list of
// notifications, each relative to the view's directory.
func encodePayload(id uint64, ms []match) payload {
	b := newPayload(64 + len(ms)*128)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\ndata: ["...)
	for i, m := range ms {
		if i > 0 {
			b = append(b, ',')
		}
		chain := m.c.chain[m.k:]
		b = append(b, `{"type":"`...)
		b = append(b, m.c.typ.String()...)
		b = append(b, `","path":`...)
		p := make([]byte, 0, 64)
		for j, l := range chain[1:] {
			if j > 0 {
				p = append(p, '/')
			}
			p = append(p, l.name...)
		}
		b = appendJSONString(b, p)
		b = append(b, `,"spine":[`...)
		for j, l := range chain {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = strconv.AppendUint(b, l.ino, 10)
			b = append(b, '"')
		}
		b = append(b, `],"stream_name":null}`...)
	}
	b = append(b, "]\n\n"...)
	return sealPayload(b)
}

func overflowMessage(id uint64, reason string) payload {
	b := newPayload(80)
	b = append(b, "id: "...)
	b = strconv.AppendUint(b, id, 10)
	b = append(b, "\nevent: overflow\ndata: {\"reason\":\""...)
	b = append(b, reason...)
	b = append(b, "\"}\n\n"...)
	return sealPayload(b)
}

// appendJSONString appends s as a JSON string. Bytes that are not UTF-8
// (Linux names are bytes) become U+FFFD.
func appendJSONString(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, `\u202`...)
			b = append(b, hex[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// subscribe registers a subscription on the directory open at fd, found
// at rel below root. fd is closed.
func (n *Notifier) subscribe(fd int, rel string, rec bool, filter Filter, lastID string, hasLastID bool) (*Subscription, error) {
	defer closeFD(fd)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.releaseFDs()
	if n.closed {
		return nil, ErrClosed
	}
	if len(n.subs) >= n.cfg.MaxSubscribers {
		return nil, ErrTooManyStreams
	}
	x, isNew, err := n.addWatch(fd)
	if err != nil {
		return nil, err
	}
	if x.parent == nil {
		x.path = rel // the path just resolved is the freshest
	}
	if isNew {
		if err := n.scanNode(x, reportNone); err != nil {
			n.forget(x)
			return nil, err
		}
	}
	n.hold(x, rec)
	if rec {
		n.watchLimitHit = false
		n.ensureCovered(x, reportNone)
		if x.gone {
			return nil, ErrNotFound
		}
		if n.watchLimitHit {
			// Part of the subtree cannot be watched: refuse rather than
			// stream a tree with holes.
			n.release(x, rec)
			return nil, ErrWatchLimit
		}
	}
	key := x.key()
	var v *view
	for _, cand := range n.byDir[key] {
		if cand.rec == rec && cand.filter == filter {
			v = cand
			break
		}
	}
	if v == nil {
		v = &view{key: key, rec: rec, filter: filter, subs: make(map[*Subscription]struct{})}
		n.byDir[key] = append(n.byDir[key], v)
	}
	s := &Subscription{
		n:    n,
		node: x,
		rec:  rec,
		view: v,
		max:  n.cfg.Queue,
		wake: make(chan struct{}, 1),
	}
	if hasLastID {
		msgs := n.replay(v, x, lastID)
		s.queue = msgs
		if len(msgs) > 0 {
			s.wake <- struct{}{}
		}
	}
	v.subs[s] = struct{}{}
	n.subs[s] = struct{}{}
	n.streams.Add(1)
	return s, nil
}

// scanNode scans a node through its path.
func (n *Notifier) scanNode(x *node, rep report) error {
	fd, err := n.dirFD(x)
	if err != nil {
		return err
	}
	return n.scan(x, fd, rep)
}

// hold adds a subscription's coverage to x.
func (n *Notifier) hold(x *node, rec bool) {
	if rec {
		if x.rec == 0 {
			x.recSince = n.seq
		}
		x.rec++
	} else {
		x.nonRec++
	}
}

// release removes a subscription's coverage from x and drops the watches
// nothing needs any more.
func (n *Notifier) release(x *node, rec bool) {
	if x.gone {
		return
	}
	if rec {
		x.rec--
	} else {
		x.nonRec--
	}
	if !n.needed(x) {
		n.dropSubtree(x)
		return
	}
	if rec {
		n.prune(x)
	}
}

// dropView stops routing to v.
func (n *Notifier) dropView(v *view) {
	views := n.byDir[v.key]
	for i, cand := range views {
		if cand == v {
			views = append(views[:i:i], views[i+1:]...)
			break
		}
	}
	if len(views) == 0 {
		delete(n.byDir, v.key)
	} else {
		n.byDir[v.key] = views
	}
}

// unsubscribe ends s's registration; its coverage lingers for a while so a
// reconnecting client can be replayed what it missed.
func (n *Notifier) unsubscribe(s *Subscription) {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.releaseFDs()
	if _, ok := n.subs[s]; ok {
		delete(n.subs, s)
	}
	v := s.view
	if _, ok := v.subs[s]; ok {
		delete(v.subs, s)
		if len(v.subs) == 0 {
			n.dropView(v)
		}
	}
	if s.node.gone || n.closed {
		return
	}
	if n.cfg.Linger > 0 {
		n.ghosts = append(n.ghosts, ghost{node: s.node, rec: s.rec, at: time.Now().Add(n.cfg.Linger)})
		n.kick()
		return
	}
	n.release(s.node, s.rec)
}

func (n *Notifier) logCut(s *Subscription) {
	n.log.Warn("subscriber fell behind and was cut off", zap.Int("queue", s.max))
}
