//go:build linux

package notifier

import (
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// node is a watched directory of the tree index.
//
// Nodes form trees: a node reached through recursive coverage is linked to
// its parent, so an event deep below a recursively watched directory can be
// routed up to it. A node without a parent is a top and remembers its path
// below root. No descriptor is held between batches: an open descriptor
// would hold back the kernel's IN_DELETE_SELF until it is closed.
type node struct {
	wd       int32
	dev, ino uint64
	name     string // name in parent; meaningful while parent != nil
	parent   *node
	path     string // path below root ("." for root); meaningful while parent == nil
	entries  map[string]*entry

	nonRec, rec int    // subscriptions (lingering ones included) on this directory
	since       uint64 // frame id when the watch began
	recSince    uint64 // frame id when rec last became positive
	gone        bool
}

// entry is one child of a watched directory.
type entry struct {
	snap
	child *node // the watched subdirectory, if any
}

func (x *node) key() dirKey { return dirKey{x.dev, x.ino} }

func (x *node) recCovered() bool {
	for a := x; a != nil; a = a.parent {
		if a.rec > 0 {
			return true
		}
	}
	return false
}

func (x *node) covered() bool { return x.nonRec+x.rec > 0 }

func (n *Notifier) needed(x *node) bool {
	return x.covered() || (x.parent != nil && x.parent.recCovered())
}

// rel is x's path below root as the index knows it.
func (x *node) rel() string {
	if x.parent == nil {
		return x.path
	}
	p := x.parent.rel()
	if p == "." {
		return x.name
	}
	return p + "/" + x.name
}

// dirFD opens x for this batch of work (descriptors are closed by
// releaseFDs before n.mu is released) and checks that the path still leads
// to x. A top whose path went stale (an ancestor outside the index was
// renamed) is looked up by inode below root; one that is no longer below
// root is queued for removal.
func (n *Notifier) dirFD(x *node) (int, error) {
	if fd, ok := n.fds[x]; ok {
		if fd < 0 {
			return -1, unix.ENOENT // already failed in this batch
		}
		return fd, nil
	}
	if x.gone {
		return -1, unix.ENOENT
	}
	fd, err := n.openNode(x)
	if err != nil && x.parent == nil && !errors.Is(err, unix.EACCES) {
		if rel, ok := n.locate(x); ok {
			x.path = rel
			fd, err = n.openNode(x)
		} else {
			n.lost = append(n.lost, x)
		}
	}
	if err != nil {
		n.fds[x] = -1
		return -1, err
	}
	n.fds[x] = fd
	return fd, nil
}

func (n *Notifier) openNode(x *node) (int, error) {
	fd, err := openBeneath(n.rootFD, x.rel(), openDirFlags)
	if err != nil {
		return -1, err
	}
	if s, err := statAt(fd, ".", false); err != nil || s.ino != x.ino || s.dev != x.dev {
		closeFD(fd)
		return -1, unix.ESTALE
	}
	return fd, nil
}

// locate finds directory x below root by its inode.
func (n *Notifier) locate(x *node) (string, bool) {
	found := ""
	walkInodes(n.rootFD, func(rel string, ino uint64, isDir bool) bool {
		if isDir && ino == x.ino {
			found = rel
			return false
		}
		return true
	})
	if found == "" && x.ino == n.rootIno && x.dev == n.rootDev {
		found = "."
	}
	return found, found != ""
}

// releaseFDs closes the descriptors of this batch and removes the tops
// found to have left root.
func (n *Notifier) releaseFDs() {
	for x, fd := range n.fds {
		if fd >= 0 {
			closeFD(fd)
		}
		delete(n.fds, x)
	}
	for len(n.lost) > 0 {
		lost := n.lost
		n.lost = nil
		for _, x := range lost {
			n.log.Debug("watched directory left root", zap.Uint64("file_id", x.ino))
			n.removeTree(x)
		}
		for x, fd := range n.fds {
			if fd >= 0 {
				closeFD(fd)
			}
			delete(n.fds, x)
		}
	}
}

// chain lists the links from x's topmost indexed ancestor down to x.
func (x *node) chain(extra int) []link {
	depth := 0
	for a := x; a != nil; a = a.parent {
		depth++
	}
	c := make([]link, depth, depth+extra)
	i := depth - 1
	for a := x; a != nil; a = a.parent {
		c[i] = link{dev: a.dev, ino: a.ino, name: a.name}
		i--
	}
	return c
}

func (n *Notifier) statEntry(x *node, name string, withXattrs bool) (snap, error) {
	fd, err := n.dirFD(x)
	if err != nil {
		return snap{}, err
	}
	return statAt(fd, name, withXattrs)
}

// emit records one notification about entry name of x.
func (n *Notifier) emit(x *node, name string, s *snap, t Type) {
	c := x.chain(1)
	c = append(c, link{dev: s.dev, ino: s.ino, name: name})
	n.push(change{typ: t, chain: c})
}

func (n *Notifier) push(c change) {
	if len(n.frame) == 0 {
		n.frameAt = time.Now()
	}
	n.frame = append(n.frame, c)
	if len(n.frame) >= maxFrame {
		n.seal()
	}
}

func typeFor(isDir bool, file, dir Type) Type {
	if isDir {
		return dir
	}
	return file
}

// addWatch watches the directory open at fd and returns its node, new or
// already known (inotify gives one watch descriptor per inode).
func (n *Notifier) addWatch(fd int) (*node, bool, error) {
	wd, err := n.addWatchFn(n.in.fd, fdPath(fd), watchMask)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return nil, false, ErrWatchLimit
		}
		return nil, false, err
	}
	if x := n.nodes[int32(wd)]; x != nil {
		return x, false, nil
	}
	s, err := statAt(fd, ".", false)
	if err != nil {
		_, _ = unix.InotifyRmWatch(n.in.fd, uint32(wd))
		return nil, false, err
	}
	x := &node{
		wd:      int32(wd),
		dev:     s.dev,
		ino:     s.ino,
		entries: make(map[string]*entry),
		since:   n.seq,
	}
	n.nodes[x.wd] = x
	return x, true, nil
}

// forget drops x from the index and the kernel.
func (n *Notifier) forget(x *node) {
	if x.gone {
		return
	}
	x.gone = true
	if !n.closed {
		_, _ = unix.InotifyRmWatch(n.in.fd, uint32(x.wd))
	}
	if n.nodes[x.wd] == x {
		delete(n.nodes, x.wd)
	}
	if fd, ok := n.fds[x]; ok {
		if fd >= 0 {
			closeFD(fd)
		}
		delete(n.fds, x)
	}
	if x.parent != nil {
		if e := x.parent.entries[x.name]; e != nil && e.child == x {
			e.child = nil
		}
		x.parent = nil
	}
	x.entries = nil
}

// report says what a scan reports of the entries it finds.
type report int64

const (
	reportNone report = 0  // fill the index silently (a subscription's starting point)
	reportAll  report = -1 // report every difference (the contents of a new directory)
)

// reportBornSince reports the entries born at or after t (nanoseconds), and
// needs birth times: those created in a directory after it was moved in.
func reportBornSince(t int64) report {
	if t <= 0 {
		return reportNone
	}
	return report(t)
}

func (r report) wants(s *snap) bool {
	return r == reportAll || (r > 0 && s.btime != 0 && s.btime >= int64(r))
}

// scan reads the directory open at dirfd into x, reporting what rep asks
// for of the entries that differ from what x knew.
func (n *Notifier) scan(x *node, dirfd int, rep report) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return err
	}
	seen := make(map[string]struct{}, len(names))
	for _, name := range names {
		s, err := statAt(dirfd, name, true)
		if err != nil {
			continue
		}
		seen[name] = struct{}{}
		old := x.entries[name]
		if old != nil && old.dev == s.dev && old.ino == s.ino {
			old.snap = s
			continue
		}
		if old != nil {
			n.dropEntry(x, name, old, rep == reportAll)
		}
		x.entries[name] = &entry{snap: s}
		if rep.wants(&s) {
			n.emit(x, name, &s, typeFor(s.isDir(), ChildFileAdded, ChildDirAdded))
		}
	}
	for name, old := range x.entries {
		if _, ok := seen[name]; !ok {
			n.dropEntry(x, name, old, rep == reportAll)
		}
	}
	n.refreshInParent(x)
	return nil
}

// refreshInParent updates the parent's snapshot of directory x after its
// contents changed, so that a later attribute change of x is not also
// reported as the mtime change its new entries caused.
func (n *Notifier) refreshInParent(x *node) {
	p := x.parent
	if p == nil {
		return
	}
	e := p.entries[x.name]
	if e == nil || e.child != x {
		return
	}
	if s, err := n.statEntry(p, x.name, false); err == nil && s.ino == e.ino {
		s.xattrs, s.acl = e.xattrs, e.acl
		e.snap = s
	}
}

func (n *Notifier) dropEntry(x *node, name string, e *entry, emit bool) {
	delete(x.entries, name)
	if emit {
		n.emit(x, name, &e.snap, typeFor(e.isDir(), ChildFileRemoved, ChildDirRemoved))
	}
	if c := e.child; c != nil {
		e.child = nil
		for _, t := range n.detach(c) {
			n.relocate(t)
		}
	}
}

// watchChild starts watching subdirectory name of x, scans it, and
// continues down while recursive coverage asks for it.
func (n *Notifier) watchChild(x *node, name string, e *entry, rep report) {
	pfd, err := n.dirFD(x)
	if err != nil {
		return
	}
	fd, err := openBeneath(pfd, name, openDirFlags)
	if err != nil {
		// Gone, replaced by a symlink or unreadable: nothing to watch.
		return
	}
	c, isNew, err := n.addWatch(fd)
	if err != nil {
		closeFD(fd)
		if errors.Is(err, ErrWatchLimit) {
			n.watchLimitHit = true
			n.log.Error("cannot watch a new directory: inotify watch limit reached; raise the sysctl fs.inotify.max_user_watches",
				zap.String("dir", x.rel()+"/"+name))
			n.overflow(reasonWatchLimit, append(x.chain(1), link{dev: e.dev, ino: e.ino, name: name}))
		}
		return
	}
	if !isNew {
		closeFD(fd)
		switch {
		case c.parent == x && c.name == name:
			e.child = c
		case c.parent == nil && c != x && !c.isAncestorOf(x):
			c.parent, c.name = x, name
			e.child = c
		default:
			return // the same directory seen at two places (a bind mount): watched at the first
		}
		n.ensureCovered(c, rep)
		return
	}
	c.parent, c.name = x, name
	e.child = c
	n.fds[c] = fd
	if err := n.scan(c, fd, rep); err != nil {
		n.log.Debug("scanning a new directory", zap.String("dir", c.rel()), zap.Error(err))
	}
	n.ensureCovered(c, rep)
}

func (x *node) isAncestorOf(y *node) bool {
	for a := y; a != nil; a = a.parent {
		if a == x {
			return true
		}
	}
	return false
}

// ensureCovered watches every subdirectory below x that recursive coverage
// needs and that is not watched yet.
func (n *Notifier) ensureCovered(x *node, rep report) {
	if x.gone || !x.recCovered() {
		return
	}
	for name, e := range x.entries {
		if !e.isDir() {
			continue
		}
		if e.child == nil {
			n.watchChild(x, name, e, rep)
		} else {
			n.ensureCovered(e.child, rep)
		}
		if x.gone {
			return
		}
	}
}

// prune drops the watched subdirectories below x that nothing needs any
// more. It returns the nodes that were kept as tops.
func (n *Notifier) prune(x *node) (kept []*node) {
	for _, e := range x.entries {
		g := e.child
		if g == nil {
			continue
		}
		if !n.needed(g) {
			e.child = nil
			kept = append(kept, n.dropSubtree(g)...)
		} else {
			kept = append(kept, n.prune(g)...)
		}
	}
	return kept
}

// dropSubtree forgets x and everything below it, except subdirectories
// that subscriptions of their own hold: those become tops.
func (n *Notifier) dropSubtree(x *node) (kept []*node) {
	for _, e := range x.entries {
		g := e.child
		if g == nil {
			continue
		}
		e.child = nil
		if g.covered() {
			g.path, g.parent = g.rel(), nil
			kept = append(kept, g)
			kept = append(kept, n.prune(g)...)
		} else {
			g.parent = nil
			kept = append(kept, n.dropSubtree(g)...)
		}
	}
	n.forget(x)
	return kept
}

// detach cuts x from its parent (it moved away or vanished) and drops what
// nothing needs any more.
func (n *Notifier) detach(x *node) (kept []*node) {
	if x.parent != nil {
		x.path, x.parent = x.rel(), nil
	}
	if x.covered() {
		return append(n.prune(x), x)
	}
	return n.dropSubtree(x)
}

// removeTree reports x and every subscribed directory below it as removed
// and forgets them all.
func (n *Notifier) removeTree(x *node) {
	if x.gone {
		return
	}
	for _, e := range x.entries {
		if g := e.child; g != nil {
			e.child = nil
			n.removeTree(g)
		}
	}
	if views := n.byDir[x.key()]; len(views) > 0 {
		n.ending = append(n.ending, views...)
		n.push(change{typ: SelfRemoved, chain: []link{{dev: x.dev, ino: x.ino}}})
	}
	n.forget(x)
}

// relocate finds a top that moved by its inode; one that is no longer
// below root (renamed out of it, or removed) ends its subscriptions.
func (n *Notifier) relocate(x *node) {
	if x.gone || x.parent != nil {
		return
	}
	if fd, ok := n.fds[x]; ok {
		if fd >= 0 {
			closeFD(fd)
		}
		delete(n.fds, x)
	}
	if _, err := n.dirFD(x); err != nil {
		n.log.Debug("watched directory left root", zap.Uint64("file_id", x.ino))
		n.removeTree(x)
	}
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+"/") || root == "/"
}

// process turns raw inotify events into notifications.
func (n *Notifier) process(evs []rawEvent) {
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
		isDir := ev.mask&unix.IN_ISDIR != 0
		switch {
		case ev.mask&unix.IN_CREATE != 0:
			n.onCreate(x, ev.name, isDir)
		case ev.mask&unix.IN_MOVED_TO != 0:
			n.onMovedTo(x, ev.name, isDir, ev.cookie, ev.at)
		case ev.mask&unix.IN_DELETE != 0:
			n.onDelete(x, ev.name, isDir)
		case ev.mask&unix.IN_MOVED_FROM != 0:
			n.onMovedFrom(x, ev.name, isDir, ev.cookie)
		case ev.mask&(unix.IN_MODIFY|unix.IN_ATTRIB) != 0:
			n.onChange(x, ev.name, ev.mask, isDir)
		case ev.mask&unix.IN_ACCESS != 0:
			if isDir {
				continue // directory atimes move with every listing, ours included
			}
			k := key{ev.wd, ev.name}
			if accessed[k] {
				continue
			}
			if accessed == nil {
				accessed = make(map[key]bool)
			}
			accessed[k] = true
			n.onChange(x, ev.name, ev.mask, isDir)
		}
	}
}

func (n *Notifier) onCreate(x *node, name string, isDir bool) {
	s, err := n.statEntry(x, name, true)
	if err != nil {
		// Gone before it could be examined: report it with an unknown ID.
		if e := x.entries[name]; e == nil {
			n.emit(x, name, &snap{}, typeFor(isDir, ChildFileAdded, ChildDirAdded))
		}
		return
	}
	if old := x.entries[name]; old != nil {
		if old.dev == s.dev && old.ino == s.ino {
			// Already known from a scan that raced with this event.
			return
		}
		n.dropEntry(x, name, old, true)
	}
	e := &entry{snap: s}
	x.entries[name] = e
	n.emit(x, name, &s, typeFor(s.isDir(), ChildFileAdded, ChildDirAdded))
	n.refreshInParent(x)
	if s.isDir() && x.recCovered() {
		// Everything created in it before the watch below is found by the
		// scan that follows the watch and reported as added.
		n.watchChild(x, name, e, reportAll)
	}
}

func (n *Notifier) onDelete(x *node, name string, isDir bool) {
	e := x.entries[name]
	if e == nil {
		n.emit(x, name, &snap{}, typeFor(isDir, ChildFileRemoved, ChildDirRemoved))
		return
	}
	delete(x.entries, name)
	n.emit(x, name, &e.snap, typeFor(e.isDir(), ChildFileRemoved, ChildDirRemoved))
	if c := e.child; c != nil {
		e.child = nil
		n.removeTree(c)
	}
	n.refreshInParent(x)
}

func (n *Notifier) onMovedFrom(x *node, name string, isDir bool, cookie uint32) {
	e := x.entries[name]
	if e == nil {
		n.emit(x, name, &snap{}, typeFor(isDir, ChildFileMovedFrom, ChildDirMovedFrom))
		n.moves[cookie] = &pendingMove{isDir: isDir, at: time.Now()}
		n.kick()
		return
	}
	delete(x.entries, name)
	n.emit(x, name, &e.snap, typeFor(e.isDir(), ChildFileMovedFrom, ChildDirMovedFrom))
	if c := e.child; c != nil {
		// Keep the subtree (and its watches) for the IN_MOVED_TO that
		// normally follows at once.
		c.path, c.parent = c.rel(), nil
	}
	n.moves[cookie] = &pendingMove{entry: e, isDir: e.isDir(), at: time.Now()}
	n.refreshInParent(x)
	n.kick()
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

func (n *Notifier) onMovedTo(y *node, name string, isDir bool, cookie uint32, at int64) {
	m := n.moves[cookie]
	delete(n.moves, cookie)
	s, err := n.statEntry(y, name, true)
	if err != nil {
		// Already moved on or removed: report what is known.
		if m != nil && m.entry != nil {
			s = m.entry.snap
			n.movedOut(m)
		}
		n.emit(y, name, &s, typeFor(isDir, ChildFileMovedTo, ChildDirMovedTo))
		return
	}
	if old := y.entries[name]; old != nil {
		if old.dev == s.dev && old.ino == s.ino {
			if m != nil {
				n.movedOut(m)
			}
			return
		}
		// The rename replaced an entry: it is gone.
		n.dropEntry(y, name, old, true)
	}
	e := &entry{snap: s}
	y.entries[name] = e
	var missed []Type
	if m != nil && m.entry != nil && m.entry.dev == s.dev && m.entry.ino == s.ino {
		missed = attrChanges(&m.entry.snap, &s)
	}
	var c *node
	if m != nil && m.entry != nil && m.entry.child != nil {
		if m.entry.dev == s.dev && m.entry.ino == s.ino && !m.entry.child.gone && !m.entry.child.isAncestorOf(y) {
			c = m.entry.child
			m.entry.child = nil
			c.parent, c.name = y, name
			e.child = c
		} else {
			n.movedOut(m)
		}
	}
	n.emit(y, name, &s, typeFor(s.isDir(), ChildFileMovedTo, ChildDirMovedTo))
	for _, t := range missed {
		n.emit(y, name, &s, t)
	}
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
	case s.isDir() && y.recCovered():
		// Moved in from outside the watched tree: its contents arrive with
		// it and are indexed, not reported one by one; only what was
		// created in it since the move (born after the move changed its
		// ctime, and after this event was read) is reported as added.
		since := min(s.ctime, at-int64(clockSlack))
		n.watchChild(y, name, e, reportBornSince(since))
	}
}

// onChange derives notification types from what one IN_MODIFY, IN_ATTRIB
// or IN_ACCESS changed, comparing the entry's snapshot before and after.
// Each kind of event compares only what it can change, so a later event
// does not inherit an earlier one's difference:
//
//	IN_MODIFY (write, truncate, mtime-only utimes): data, size, mtime
//	IN_ACCESS (read, atime-only utimes): atime
//	IN_ATTRIB (chmod, chown, utimes, xattrs): every attribute
func (n *Notifier) onChange(x *node, name string, mask uint32, isDir bool) {
	e := x.entries[name]
	attrib := mask&unix.IN_ATTRIB != 0
	var s snap
	var err error
	if e != nil {
		s, err = n.statEntry(x, name, attrib)
	}
	if e == nil || err != nil || s.ino != e.ino || s.dev != e.dev {
		// Renamed, removed or replaced since. Data was written all the
		// same; which attributes changed is found by the rename's
		// IN_MOVED_TO, or is lost with the file.
		if mask&unix.IN_MODIFY != 0 && !isDir {
			if e != nil {
				s = e.snap
			}
			n.emit(x, name, &s, ChildDataWritten)
		}
		return
	}
	old := e.snap
	var types [10]Type
	t := types[:0]
	dir := old.isDir()
	if mask&unix.IN_MODIFY != 0 {
		if !dir {
			t = append(t, ChildDataWritten)
		}
		if s.size != old.size && !dir {
			t = append(t, ChildSizeChanged)
		}
		if s.mtime != old.mtime {
			t = append(t, ChildMtimeChanged)
		}
		e.size, e.mtime, e.ctime = s.size, s.mtime, s.ctime
	}
	if mask&unix.IN_ACCESS != 0 && !attrib {
		if s.atime != old.atime && !dir {
			t = append(t, ChildAtimeChanged)
		}
		e.atime = s.atime
	}
	if attrib {
		if s.size != old.size && !dir && mask&unix.IN_MODIFY == 0 {
			t = append(t, ChildSizeChanged)
		}
		if s.mtime != old.mtime && mask&unix.IN_MODIFY == 0 {
			t = append(t, ChildMtimeChanged)
		}
		if s.atime != old.atime && !dir {
			t = append(t, ChildAtimeChanged)
		}
		if s.btime != old.btime && s.btime != 0 && old.btime != 0 {
			t = append(t, ChildBtimeChanged)
		}
		if s.uid != old.uid {
			t = append(t, ChildOwnerChanged)
		}
		if s.gid != old.gid {
			t = append(t, ChildGroupChanged)
		}
		if s.mode&07777 != old.mode&07777 || s.acl != old.acl {
			t = append(t, ChildACLChanged)
		}
		if s.xattrs != old.xattrs {
			t = append(t, ChildExtraAttrsChanged)
		}
		e.snap = s
	}
	for _, typ := range t {
		n.emit(x, name, &e.snap, typ)
	}
}

// attrChanges lists what differs between two snapshots of one file taken
// around a rename: changes whose own events were processed only after the
// file had left its old name.
func attrChanges(old, s *snap) []Type {
	var t []Type
	if !old.isDir() {
		if s.size != old.size {
			t = append(t, ChildSizeChanged)
		}
		if s.mtime != old.mtime {
			t = append(t, ChildMtimeChanged)
		}
		if s.atime != old.atime {
			t = append(t, ChildAtimeChanged)
		}
	}
	if s.uid != old.uid {
		t = append(t, ChildOwnerChanged)
	}
	if s.gid != old.gid {
		t = append(t, ChildGroupChanged)
	}
	if s.mode&07777 != old.mode&07777 || s.acl != old.acl {
		t = append(t, ChildACLChanged)
	}
	if s.xattrs != old.xattrs {
		t = append(t, ChildExtraAttrsChanged)
	}
	return t
}

// kernelOverflow handles IN_Q_OVERFLOW: the index is rebuilt from the
// directories themselves so that later differences are computed against
// the truth, and then every subscriber is told to rescan.
func (n *Notifier) kernelOverflow() {
	n.stats.Overflows++
	n.log.Warn("inotify queue overflowed; subscribers told to rescan (consider raising the sysctl fs.inotify.max_queued_events)")
	n.seal()
	defer n.overflow(reasonKernelQueue, nil)
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
