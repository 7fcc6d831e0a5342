//go:build linux

package notifier

import (
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// process applies a batch of inotify events to the index and publishes
// what they mean.
func (n *Notifier) process(evs []inotifyEvent) {
	type key struct {
		wd   int32
		name string
	}
	var accessed map[key]bool
	for _, ev := range evs {
		if ev.mask&unix.IN_Q_OVERFLOW != 0 {
			n.kernelOverflow()
			continue
		}
		x := n.nodes[ev.wd]
		if x == nil {
			continue
		}
		if ev.name == "" {
			switch {
			case ev.mask&(unix.IN_DELETE_SELF|unix.IN_IGNORED|unix.IN_UNMOUNT) != 0:
				n.removeTree(x)
			case ev.mask&unix.IN_MOVE_SELF != 0 && x.parent == nil:
				n.relocate(x)
			}
			continue
		}
		n.freshen(x, ev.name)
		switch {
		case ev.mask&unix.IN_CREATE != 0:
			n.onCreate(x, ev.name, ev.mask)
		case ev.mask&unix.IN_MOVED_TO != 0:
			n.onMovedTo(x, ev.name, ev.mask, ev.cookie, ev.at)
		case ev.mask&unix.IN_DELETE != 0:
			n.onDelete(x, ev.name, ev.mask)
		case ev.mask&unix.IN_MOVED_FROM != 0:
			n.onMovedFrom(x, ev.name, ev.mask, ev.cookie)
		case ev.mask&(unix.IN_MODIFY|unix.IN_ATTRIB) != 0:
			n.onChange(x, ev.name, ev.mask)
		case ev.mask&unix.IN_ACCESS != 0:
			if ev.mask&unix.IN_ISDIR != 0 {
				continue // directory atimes move with every listing, ours included
			}
			// One statx per file and burst, however many reads.
			k := key{ev.wd, ev.name}
			if accessed[k] {
				continue
			}
			if accessed == nil {
				accessed = make(map[key]bool)
			}
			accessed[k] = true
			n.onChange(x, ev.name, ev.mask)
		}
	}
}

// notify publishes what one event about entry name of x means.
func (n *Notifier) notify(x *node, name string, mask uint32, before, after *snap) {
	types := notificationTypes(mask, before, after)
	if len(types) == 0 {
		return
	}
	s := subject(before, after)
	if s == nil {
		s = &snap{} // gone before it could be examined: file ID 0
	}
	chain := append(x.chain(1), link{ino: s.ino, name: name})
	for _, t := range types {
		n.hub.Publish(change{typ: t, chain: chain})
	}
}

// stat examines entry name of x after an event with mask; nil when it is
// gone.
func (n *Notifier) stat(x *node, name string, mask uint32) *snap {
	s, err := n.statEntry(x, name, statsXattrs(mask))
	if err != nil {
		return nil
	}
	return &s
}

// replaced drops the indexed entry name of x when after, found under
// that name now, is another file: it was removed, or renamed over. It
// returns what is indexed under name for the same file, if anything.
func (n *Notifier) replaced(x *node, name string, after *snap) *entry {
	old := x.entries[name]
	if old != nil && after != nil && !sameEntry(&old.snap, after) {
		n.dropEntry(x, name, old, true)
		return nil
	}
	return old
}

func (n *Notifier) onCreate(x *node, name string, mask uint32) {
	after := n.stat(x, name, mask)
	if old := n.replaced(x, name, after); old != nil {
		n.notify(x, name, mask, &old.snap, after) // nothing: a scan saw it first
		return
	}
	n.notify(x, name, mask, nil, after)
	if after == nil {
		return
	}
	e := &entry{snap: *after}
	x.entries[name] = e
	n.refreshInParent(x)
	if after.isDir() && x.underRecursive() {
		// Everything created in it before the watch below is found by the
		// scan that follows the watch and reported as added.
		n.watchChild(x, name, e, reportAll)
	}
}

func (n *Notifier) onDelete(x *node, name string, mask uint32) {
	e := x.entries[name]
	if e == nil {
		n.notify(x, name, mask, nil, nil)
		return
	}
	delete(x.entries, name)
	n.notify(x, name, mask, &e.snap, nil)
	if c := e.child; c != nil {
		e.child = nil
		n.removeTree(c)
	}
	n.refreshInParent(x)
}

func (n *Notifier) onMovedFrom(x *node, name string, mask uint32, cookie uint32) {
	e := x.entries[name]
	if e == nil {
		n.notify(x, name, mask, nil, nil)
		n.moves[cookie] = &pendingMove{isDir: mask&unix.IN_ISDIR != 0, at: time.Now()}
		n.wakeLoop()
		return
	}
	delete(x.entries, name)
	n.notify(x, name, mask, &e.snap, nil)
	if c := e.child; c != nil {
		// Keep the subtree (and its watches) for the IN_MOVED_TO that
		// normally follows at once.
		c.path, c.parent = c.rel(), nil
	}
	n.moves[cookie] = &pendingMove{entry: e, isDir: e.isDir(), at: time.Now()}
	n.refreshInParent(x)
	n.wakeLoop()
}

// movedOut handles an IN_MOVED_FROM whose IN_MOVED_TO never came: the
// entry left the watched part of the tree.
func (n *Notifier) movedOut(m *pendingMove) {
	if m.entry == nil || m.entry.child == nil {
		return
	}
	c := m.entry.child
	m.entry.child = nil
	for _, t := range n.detach(c) {
		n.relocate(t)
	}
}

func (n *Notifier) onMovedTo(y *node, name string, mask uint32, cookie uint32, at int64) {
	m := n.moves[cookie]
	delete(n.moves, cookie)
	var moved *snap // the entry under its old name
	if m != nil && m.entry != nil {
		moved = &m.entry.snap
	}
	after := n.stat(y, name, mask)
	if after == nil {
		// Already moved on or removed: report what is known.
		if m != nil {
			n.movedOut(m)
		}
		n.notify(y, name, mask, moved, nil)
		return
	}
	if old := n.replaced(y, name, after); old != nil {
		// Indexed already, by a scan that raced with the event.
		if m != nil {
			n.movedOut(m)
		}
		return
	}
	if !sameEntry(moved, after) {
		moved = nil
	}
	e := &entry{snap: *after}
	y.entries[name] = e
	c := n.takeSubtree(m, y, name, e, moved != nil)
	n.notify(y, name, mask, moved, after)
	n.refreshInParent(y)
	switch {
	case c != nil:
		// The watched subtree came along; coverage here may differ.
		if !n.needed(c) {
			e.child = nil
			c.path, c.parent = c.rel(), nil
			for _, t := range n.dropSubtree(c) {
				n.relocate(t)
			}
		} else {
			n.prune(c)
			n.ensureCovered(c, reportNone)
		}
	case after.isDir() && y.underRecursive():
		// Moved in from outside the watched tree: its contents arrive with
		// it and are indexed, not reported one by one; only what was
		// created in it since the move (born after the move changed its
		// ctime, and after this event was read) is reported as added.
		since := min(after.ctime, at-int64(clockSlack))
		n.watchChild(y, name, e, reportBornSince(since))
	}
}

// takeSubtree moves the watched subtree of a renamed directory to its new
// place, entry e named name in y, if the rename kept it (same is the
// moved entry still being the same directory) and it does not land inside
// itself; otherwise the subtree left the watched tree.
func (n *Notifier) takeSubtree(m *pendingMove, y *node, name string, e *entry, same bool) *node {
	if m == nil || m.entry == nil || m.entry.child == nil {
		return nil
	}
	c := m.entry.child
	if !same || c.gone || c.isAncestorOf(y) {
		n.movedOut(m)
		return nil
	}
	m.entry.child = nil
	c.parent, c.name = y, name
	e.child = c
	return c
}

// onChange handles IN_MODIFY, IN_ATTRIB and IN_ACCESS: the index entry
// is compared with the file as it is now, and refreshed.
func (n *Notifier) onChange(x *node, name string, mask uint32) {
	e := x.entries[name]
	if e == nil {
		n.notify(x, name, mask, nil, nil)
		return
	}
	after := n.stat(x, name, mask)
	before := e.snap
	n.notify(x, name, mask, &before, after)
	if sameEntry(&before, after) {
		refresh(&e.snap, after, mask)
	}
}

// kernelOverflow handles IN_Q_OVERFLOW: the index is rebuilt from the
// directories themselves so that later differences are computed against
// the truth, and then every subscriber is told to rescan.
func (n *Notifier) kernelOverflow() {
	n.overflows++
	n.log.Warn("inotify queue overflowed; subscribers told to rescan (consider raising the sysctl fs.inotify.max_queued_events)")
	defer n.hub.Overflow(reasonKernelQueue, nil)
	for cookie, m := range n.moves {
		delete(n.moves, cookie)
		n.movedOut(m)
	}
	var tops []*node
	for _, x := range n.nodes {
		if x.parent == nil {
			tops = append(tops, x)
		}
	}
	for _, x := range tops {
		n.resync(x)
	}
}

func (n *Notifier) resync(x *node) {
	if x.gone {
		return
	}
	fd, err := n.dirFD(x)
	if err != nil {
		if x.parent != nil {
			n.removeTree(x)
		}
		return
	}
	if err := n.scan(x, fd, reportNone); err != nil {
		return
	}
	n.ensureCovered(x, reportNone)
	for _, e := range x.entries {
		if e.child != nil {
			n.resync(e.child)
		}
	}
}

func (n *Notifier) logWatchLimit(dir string) {
	n.log.Error("cannot watch a new directory: inotify watch limit reached; raise the sysctl fs.inotify.max_user_watches",
		zap.String("dir", dir))
}
