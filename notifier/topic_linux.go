//go:build linux

package notifier

import (
	"encoding/binary"
	"strconv"

	"github.com/etaggate/etaggate/sse"
)

// change is one notification as the index records it, before it is made
// relative to a stream's directory: chain runs from the topmost indexed
// ancestor down to the entry (for self_removed, chain is the removed
// directory alone).
type change struct {
	typ   Type
	chain []link
	lost  bool // not a notification: the scope of a watch_limit overflow
}

// link is one step of a change's chain: a watched directory, or the entry
// itself at the end.
type link struct {
	key  string // the watched directory's dirKey; "" for the entry
	ino  uint64
	name string // name within the previous link
}

// dirKey identifies a directory by device and inode: the key its topics
// listen under.
func dirKey(dev, ino uint64) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], dev)
	binary.LittleEndian.PutUint64(b[8:], ino)
	return string(b[:])
}

// topic is what a stream asked for: one directory, recursively or not,
// and the types it wants. Streams with equal topics share their events.
type topic struct {
	dir       *node
	recursive bool
	filter    Filter
}

func (t topic) Key() string { return t.dir.key }

// Match reports whether c concerns a stream on the directory at position
// at of c's chain: a child of it (any descendant when recursive) of a
// type the filter wants, or the directory itself removed.
func (t topic) Match(c *change, at int) bool {
	last := len(c.chain) - 1
	switch {
	case c.lost:
		return t.recursive
	case c.typ == SelfRemoved:
		return at == last && t.filter.Has(SelfRemoved)
	case at > last-1 || (!t.recursive && at != last-1):
		return false
	}
	return t.filter.Has(c.typ)
}

// AppendJSON writes c as Qumulo does, relative to the stream's directory:
// path below it, and the spine of file IDs from it down to the entry.
func (t topic) AppendJSON(b []byte, c *change, at int) []byte {
	chain := c.chain[at:]
	b = append(b, `{"type":"`...)
	b = append(b, c.typ.String()...)
	b = append(b, `","path":`...)
	p := make([]byte, 0, 64)
	for j, l := range chain[1:] {
		if j > 0 {
			p = append(p, '/')
		}
		p = append(p, l.name...)
	}
	b = sse.AppendJSONString(b, p)
	b = append(b, `,"spine":[`...)
	for j, l := range chain {
		if j > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendUint(b, l.ino, 10)
		b = append(b, '"')
	}
	return append(b, `],"stream_name":null}`...)
}

// source tells the hub where a change happened, and hears of streams
// that ended.
type source struct{ n *Notifier }

// Scope lists the watched directories of c's chain.
func (s source) Scope(keys []string, c *change) []string {
	for _, l := range c.chain {
		if l.key == "" {
			break
		}
		keys = append(keys, l.key)
	}
	return keys
}

func (s source) Left(t sse.Topic[change]) {
	tp := t.(topic)
	s.n.left(tp.dir, tp.recursive)
}
