//go:build linux

package notifier

import (
	"slices"
	"sync"
	"time"
)

// idFresh is how long a walk of root answers for the IDs it did not find:
// a directory created in an unwatched part of the tree may take this long
// to be found by its ID.
const idFresh = time.Second

// idIndex is what one walk of root found: every file ID, and the path of
// every directory.
type idIndex struct {
	done     chan struct{} // closed when the walk is over
	ids      []uint64      // sorted
	dirs     map[uint64]string
	finished time.Time
}

// idWalks shares walks of root between the lookups of file IDs, so that
// clients asking for unknown IDs cost about one walk per idFresh however
// many they are. Its mutex is taken after n.mu, never before.
type idWalks struct {
	mu      sync.Mutex
	running *idIndex // the walk in progress
	last    *idIndex // the last one finished, until it is stale
	count   int      // walks so far
}

// lookup tells whether the walk found ino, and its path if a directory.
func (ix *idIndex) lookup(ino uint64) (rel string, isDir, found bool) {
	if rel, ok := ix.dirs[ino]; ok {
		return rel, true, true
	}
	_, found = slices.BinarySearch(ix.ids, ino)
	return "", false, found
}

// recentWalk returns a walk that finished less than idFresh ago: the one
// in progress once it is over, the last one, or a new one.
func (n *Notifier) recentWalk() *idIndex {
	w := &n.walks
	w.mu.Lock()
	if ix := w.running; ix != nil {
		w.mu.Unlock()
		<-ix.done
		return ix
	}
	if ix := w.last; ix != nil && time.Since(ix.finished) < idFresh {
		w.mu.Unlock()
		return ix
	}
	ix := &idIndex{done: make(chan struct{}), dirs: make(map[uint64]string)}
	w.running = ix
	w.count++
	w.mu.Unlock()

	walkInodes(n.rootFD, func(rel string, ino uint64, isDir bool) bool {
		ix.ids = append(ix.ids, ino)
		if isDir {
			ix.dirs[ino] = rel
		}
		return true
	})
	slices.Sort(ix.ids)
	w.mu.Lock()
	ix.finished = time.Now()
	w.running, w.last = nil, ix
	w.mu.Unlock()
	close(ix.done)
	n.cacheDirs(ix.dirs)
	n.wakeLoop() // to forget the walk once stale
	return ix
}

// cacheDirs remembers where directories were found, a bounded number.
func (n *Notifier) cacheDirs(dirs map[uint64]string) {
	const most = 1 << 16
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.idCache)+min(len(dirs), most) > most {
		clear(n.idCache)
	}
	for ino, rel := range dirs {
		if len(n.idCache) >= most {
			break
		}
		n.idCache[ino] = rel
	}
}

// forgetStaleWalk drops the last walk once it no longer answers, so its
// memory does not outlive it; it returns when to look again. n.mu is held.
func (n *Notifier) forgetStaleWalk(now time.Time) (time.Time, bool) {
	w := &n.walks
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return time.Time{}, false
	}
	if stale := w.last.finished.Add(idFresh); now.Before(stale) {
		return stale, true
	}
	w.last = nil
	return time.Time{}, false
}
