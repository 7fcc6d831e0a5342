//go:build linux

package notifier

import (
	"errors"
	"strings"

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
	key      string // dirKey(dev, ino)
	name     string // name in parent; meaningful while parent != nil
	parent   *node
	path     string // path below root ("." for root); meaningful while parent == nil
	entries  map[string]*entry

	// Subscriptions, lingering ones included, on this directory alone and
	// on its whole subtree.
	direct, recursive int
	since             uint64 // the hub's last frame id when the watch began
	recursiveSince    uint64 // the same, when recursive last became positive
	gone              bool
}

// entry is one child of a watched directory.
type entry struct {
	snap
	child *node // the watched subdirectory, if any
}

// underRecursive reports whether a recursive subscription covers x.
func (x *node) underRecursive() bool {
	for a := x; a != nil; a = a.parent {
		if a.recursive > 0 {
			return true
		}
	}
	return false
}

func (x *node) covered() bool { return x.direct+x.recursive > 0 }

func (n *Notifier) needed(x *node) bool {
	return x.covered() || (x.parent != nil && x.parent.underRecursive())
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
	fd, err := openBeneath(n.rootFD, x.rel(), pathDirFlags)
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

// releaseFDs ends a batch of work: it refreshes the directories marked by
// refreshInParent, closes the descriptors of the batch and removes the
// tops found to have left root.
func (n *Notifier) releaseFDs() {
	n.refreshStale()
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
		c[i] = link{key: a.key, ino: a.ino, name: a.name}
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
		key:     dirKey(s.dev, s.ino),
		entries: make(map[string]*entry),
		since:   n.hub.LastID(),
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

// reporting says what a scan reports of the entries it finds.
type reporting int64

const (
	reportNone reporting = 0  // fill the index silently (a subscription's starting point)
	reportAll  reporting = -1 // report every difference (the contents of a new directory)
)

// reportBornSince reports the entries born at or after t (nanoseconds), and
// needs birth times: those created in a directory after it was moved in.
func reportBornSince(t int64) reporting {
	if t <= 0 {
		return reportNone
	}
	return reporting(t)
}

func (r reporting) wants(s *snap) bool {
	return r == reportAll || (r > 0 && s.btime != 0 && s.btime >= int64(r))
}

// scan reads the directory open at dirfd into x, reporting what report asks
// for of the entries that differ from what x knew.
func (n *Notifier) scan(x *node, dirfd int, report reporting) error {
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
			n.dropEntry(x, name, old, report == reportAll)
		}
		x.entries[name] = &entry{snap: s}
		if report.wants(&s) {
			n.notify(x, name, unix.IN_CREATE, nil, &s)
		}
	}
	for name, old := range x.entries {
		if _, ok := seen[name]; !ok {
			n.dropEntry(x, name, old, report == reportAll)
		}
	}
	n.refreshInParent(x)
	return nil
}

// refreshInParent marks directory x, whose contents changed, so that the
// parent's snapshot of it is read again once the work in progress is done
// (releaseFDs), or before an event about x itself (freshen): a later
// attribute change of x is then not also reported as the mtime change its
// new entries caused. A burst of events in one directory costs one statx
// of it, not one per event.
func (n *Notifier) refreshInParent(x *node) {
	if x.parent != nil {
		n.stale[x] = struct{}{}
	}
}

// freshen refreshes the snapshot of entry name of x now if it is a
// directory marked by refreshInParent.
func (n *Notifier) freshen(x *node, name string) {
	if len(n.stale) == 0 {
		return
	}
	if e := x.entries[name]; e != nil && e.child != nil {
		if _, ok := n.stale[e.child]; ok {
			delete(n.stale, e.child)
			n.refreshNow(e.child)
		}
	}
}

// refreshStale refreshes every directory marked by refreshInParent.
func (n *Notifier) refreshStale() {
	for x := range n.stale {
		delete(n.stale, x)
		n.refreshNow(x)
	}
}

// refreshNow updates the parent's snapshot of directory x.
func (n *Notifier) refreshNow(x *node) {
	p := x.parent
	if p == nil || x.gone {
		return
	}
	e := p.entries[x.name]
	if e == nil || e.child != x {
		return
	}
	if s, err := n.statEntry(p, x.name, false); err == nil && s.ino == e.ino {
		// What its entries change, and only that: an attribute change of
		// x made before this statx, whose event is still to come, must
		// find the old value to compare with.
		e.size, e.mtime, e.ctime = s.size, s.mtime, s.ctime
	}
}

// dropEntry forgets entry name of x, reporting its removal if asked.
func (n *Notifier) dropEntry(x *node, name string, e *entry, report bool) {
	delete(x.entries, name)
	if report {
		n.notify(x, name, unix.IN_DELETE, &e.snap, nil)
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
func (n *Notifier) watchChild(x *node, name string, e *entry, report reporting) {
	pfd, err := n.dirFD(x)
	if err != nil {
		return
	}
	fd, err := openBeneath(pfd, name, pathDirFlags)
	if err != nil {
		// Gone, replaced by a symlink or unreadable: nothing to watch.
		return
	}
	c, isNew, err := n.addWatch(fd)
	if err != nil {
		closeFD(fd)
		if errors.Is(err, ErrWatchLimit) {
			n.watchLimitHit = true
			n.logWatchLimit(x.rel() + "/" + name)
			n.hub.Overflow(reasonWatchLimit, &change{lost: true, chain: append(x.chain(1), link{ino: e.ino, name: name})})
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
		n.ensureCovered(c, report)
		return
	}
	c.parent, c.name = x, name
	e.child = c
	n.fds[c] = fd
	if err := n.scan(c, fd, report); err != nil {
		n.log.Debug("scanning a new directory", zap.String("dir", c.rel()), zap.Error(err))
	}
	n.ensureCovered(c, report)
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
func (n *Notifier) ensureCovered(x *node, report reporting) {
	if x.gone || !x.underRecursive() {
		return
	}
	for name, e := range x.entries {
		if !e.isDir() {
			continue
		}
		if e.child == nil {
			n.watchChild(x, name, e, report)
		} else {
			n.ensureCovered(e.child, report)
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
	// Its streams are told, and end.
	n.hub.End(x.key, change{typ: SelfRemoved, chain: []link{{key: x.key, ino: x.ino}}})
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
