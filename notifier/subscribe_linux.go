//go:build linux

package notifier

import (
	"time"

	"github.com/etaggate/etaggate/sse"
)

// subscribe opens a stream on the directory open at fd, found at rel
// below root, once the directory (and with recursive its whole subtree)
// is watched and indexed; sub tells where it resumes and its name, and
// is given its topic here. fd is closed.
func (n *Notifier) subscribe(fd int, rel string, recursive bool, filter Filter, sub sse.Subscription[change]) (*sse.Stream, error) {
	defer closeFD(fd)
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.releaseFDs()
	if n.closed {
		return nil, sse.ErrClosed
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
	n.hold(x, recursive)
	if recursive {
		n.watchLimitHit = false
		n.ensureCovered(x, reportNone)
		if x.gone {
			return nil, ErrNotFound
		}
		if n.watchLimitHit {
			// Part of the subtree cannot be watched: refuse rather than
			// stream a tree with holes.
			n.release(x, recursive)
			return nil, ErrWatchLimit
		}
	}
	sub.Topic = topic{dir: x, recursive: recursive, filter: filter}
	sub.Since = x.since
	if recursive {
		sub.Since = x.recursiveSince
	}
	s, err := n.hub.Subscribe(sub)
	if err != nil {
		n.release(x, recursive)
		return nil, err
	}
	return s, nil
}

// scanNode scans a node through its path.
func (n *Notifier) scanNode(x *node, report reporting) error {
	fd, err := n.dirFD(x)
	if err != nil {
		return err
	}
	return n.scan(x, fd, report)
}

// hold adds a subscription's coverage to x.
func (n *Notifier) hold(x *node, recursive bool) {
	if recursive {
		if x.recursive == 0 {
			x.recursiveSince = n.hub.LastID()
		}
		x.recursive++
	} else {
		x.direct++
	}
}

// release removes a subscription's coverage from x and drops the watches
// nothing needs any more.
func (n *Notifier) release(x *node, recursive bool) {
	if x.gone {
		return
	}
	if recursive {
		x.recursive--
	} else {
		x.direct--
	}
	if !n.needed(x) {
		n.dropSubtree(x)
		return
	}
	if recursive {
		n.prune(x)
	}
}

// left is told by the hub that a stream on x ended. Its coverage lingers
// for a while, so a reconnecting client can be replayed what it missed.
func (n *Notifier) left(x *node, recursive bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.releaseFDs()
	if x.gone || n.closed {
		return
	}
	if n.cfg.Linger > 0 {
		n.lingering = append(n.lingering, lingering{dir: x, recursive: recursive, at: time.Now().Add(n.cfg.Linger)})
		n.wakeLoop()
		return
	}
	n.release(x, recursive)
}
