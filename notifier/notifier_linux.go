//go:build linux

package notifier

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/etaggate/etaggate/sse"
)

// Notifier watches one root directory for any number of subscribers, and
// publishes what changes to its hub.
//
// It owns two goroutines: the reader, which only drains the inotify
// descriptor into a backlog (so the kernel queue rarely overflows), and the
// loop, which applies that backlog to the tree index, pairs renames and
// expires lingering watches; the hub owns its own. Close ends every
// stream, stops them all and waits for them.
type Notifier struct {
	cfg  Config
	log  *zap.Logger
	root string // absolute, symlinks resolved
	hub  *sse.Hub[change]

	walks idWalks // shared walks of root, for file IDs

	rootMu           sync.RWMutex // held (read) while rootFD is used outside mu
	rootFD           int          // O_PATH descriptor of root; -1 once closed
	rootDev, rootIno uint64
	in               *inotifyFile
	gather           time.Duration                                       // the reader's rest after handing events on
	addWatchFn       func(fd int, path string, mask uint32) (int, error) // inotify_add_watch; tests replace it

	backlogMu sync.Mutex
	backlog   []inotifyEvent
	dropped   bool
	wakeup    chan struct{} // cap 1: the backlog or the timers changed

	stop     chan struct{}
	loopDone sync.WaitGroup

	mu        sync.Mutex // guards everything below
	closed    bool
	nodes     map[int32]*node // by watch descriptor
	lingering []lingering
	moves     map[uint32]*pendingMove // by inotify cookie
	idCache   map[uint64]string       // directory inode → path relative to root
	fds       map[*node]int           // descriptors opened for the work in progress
	stale     map[*node]struct{}      // directories whose snapshot in their parent is to be read again
	lost      []*node                 // tops found outside root, to remove
	overflows uint64                  // kernel queue overflows

	watchLimitHit bool // a watch was refused with ENOSPC since last reset
}

// lingering is a released subscription whose watch is kept until at.
type lingering struct {
	dir       *node
	recursive bool
	at        time.Time
}

type pendingMove struct {
	entry *entry // nil when the source entry was not indexed
	isDir bool
	at    time.Time
}

// New starts watching cfg.Root, which must be a directory.
func New(cfg Config) (*Notifier, error) {
	if cfg.Root == "" {
		return nil, errors.New("root is required")
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", cfg.Root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", cfg.Root, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", cfg.Root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("root %q is not a directory", cfg.Root)
	}
	rootFD, err := unix.Open(real, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root %q: %w", cfg.Root, err)
	}
	rs, err := statAt(rootFD, ".", false)
	if err != nil {
		unix.Close(rootFD)
		return nil, fmt.Errorf("stat root %q: %w", cfg.Root, err)
	}
	in, err := newInotify()
	if err != nil {
		unix.Close(rootFD)
		if errors.Is(err, unix.EMFILE) {
			return nil, fmt.Errorf("creating an inotify instance: %w (raise the sysctl fs.inotify.max_user_instances)", err)
		}
		return nil, fmt.Errorf("creating an inotify instance: %w", err)
	}
	n := &Notifier{
		cfg:        cfg,
		log:        cfg.Logger,
		root:       real,
		rootFD:     rootFD,
		rootDev:    rs.dev,
		rootIno:    rs.ino,
		in:         in,
		gather:     gatherFor(cfg.Hub.Batch),
		wakeup:     make(chan struct{}, 1),
		addWatchFn: unix.InotifyAddWatch,
		stop:       make(chan struct{}),
		nodes:      make(map[int32]*node),
		moves:      make(map[uint32]*pendingMove),
		idCache:    make(map[uint64]string),
		fds:        make(map[*node]int),
		stale:      make(map[*node]struct{}),
	}
	hubCfg := cfg.Hub
	hubCfg.Logger = cfg.Logger
	n.hub, err = sse.New(hubCfg, source{n}, nil)
	if err != nil {
		unix.Close(rootFD)
		in.close()
		return nil, fmt.Errorf("starting the hub: %w", err)
	}
	n.loopDone.Add(2)
	go n.read()
	go n.loop()
	return n, nil
}

// Root is the watched tree's absolute path, symlinks resolved.
func (n *Notifier) Root() string { return n.root }

// Close ends every stream, stops watching and waits until every goroutine
// of the Notifier and every stream it served have returned. It may be
// called more than once.
func (n *Notifier) Close() error {
	n.mu.Lock()
	again := n.closed
	n.closed = true // no new subscription from here on
	n.mu.Unlock()
	if again {
		n.loopDone.Wait()
		return n.hub.Close()
	}
	close(n.stop)
	n.in.interrupt()
	n.loopDone.Wait()
	err := n.in.close() // the kernel drops every watch

	// What was read is applied, and then sent by the hub's Close, so a
	// change made just before a reload reaches every stream.
	n.mu.Lock()
	n.backlogMu.Lock()
	evs := n.backlog
	n.backlog = nil
	n.backlogMu.Unlock()
	n.process(evs)
	n.releaseFDs()
	n.mu.Unlock()
	hubErr := n.hub.Close()

	n.mu.Lock()
	for _, x := range n.nodes {
		x.gone = true
	}
	n.nodes = map[int32]*node{}
	n.lingering = nil
	n.mu.Unlock()
	n.rootMu.Lock()
	closeFD(n.rootFD)
	n.rootFD = -1
	n.rootMu.Unlock()
	return errors.Join(hubErr, err)
}

func (n *Notifier) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Stats returns counters and gauges of n.
func (n *Notifier) Stats() Stats {
	s := Stats{Stats: n.hub.Stats()}
	n.mu.Lock()
	defer n.mu.Unlock()
	s.Watches = len(n.nodes)
	s.Lingering = len(n.lingering)
	s.KernelOverflows = n.overflows
	return s
}

// wakeLoop tells the loop that the backlog or its timers changed.
func (n *Notifier) wakeLoop() {
	select {
	case n.wakeup <- struct{}{}:
	default:
	}
}

// loop applies the backlog to the index and runs the timers: rename
// pairing and lingering watches.
func (n *Notifier) loop() {
	defer n.loopDone.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var spare []inotifyEvent
	for {
		select {
		case <-n.stop:
			return
		case <-n.wakeup:
		case <-timer.C:
		}
		n.backlogMu.Lock()
		evs := n.backlog
		n.backlog = spare[:0]
		n.backlogMu.Unlock()

		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return
		}
		now := time.Now()
		if len(evs) > 0 {
			n.process(evs)
		}
		next := n.tick(now)
		n.releaseFDs()
		n.mu.Unlock()

		clear(evs)
		spare = evs
		timer.Reset(next)
	}
}

// tick runs whatever is due at now and returns how long to sleep.
func (n *Notifier) tick(now time.Time) time.Duration {
	next := time.Hour
	due := func(at time.Time) {
		if d := at.Sub(now); d < next {
			next = max(d, time.Millisecond)
		}
	}
	for cookie, m := range n.moves {
		if now.Sub(m.at) >= moveWait {
			delete(n.moves, cookie)
			n.movedOut(m)
		} else {
			due(m.at.Add(moveWait))
		}
	}
	if len(n.lingering) > 0 {
		keep := n.lingering[:0]
		for _, l := range n.lingering {
			if !now.Before(l.at) {
				n.release(l.dir, l.recursive)
			} else {
				keep = append(keep, l)
				due(l.at)
			}
		}
		clear(n.lingering[len(keep):])
		n.lingering = keep
	}
	if at, ok := n.forgetStaleWalk(now); ok {
		due(at)
	}
	return next
}
