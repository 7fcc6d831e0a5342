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
)

// Notifier watches one root directory for any number of subscribers.
//
// It owns two goroutines: the reader, which only drains the inotify
// descriptor into a backlog (so the kernel queue rarely overflows), and the
// loop, which processes that backlog, seals batch windows and expires
// lingering watches; and the wire hub's few, which write the streams whose
// connections it took over. Close ends every stream, stops them all and
// waits for them.
type Notifier struct {
	cfg  Config
	log  *zap.Logger
	root string // absolute, symlinks resolved

	rootMu           sync.RWMutex // held (read) while rootFD is used outside mu
	rootFD           int          // O_PATH descriptor of root; -1 once closed
	rootDev, rootIno uint64
	in               *inotifyFile
	addWatchFn       func(fd int, path string, mask uint32) (int, error) // inotify_add_watch; tests replace it

	backlogMu sync.Mutex
	backlog   []rawEvent
	dropped   bool
	wakeLoop  chan struct{} // cap 1: backlog or timers changed

	closing  chan struct{}
	loopDone sync.WaitGroup
	streams  sync.WaitGroup
	wires    *wireHub // writes the streams whose connections were taken over

	mu      sync.Mutex // guards everything below
	closed  bool
	nodes   map[int32]*node // by watch descriptor
	byDir   map[dirKey][]*view
	subs    map[*Subscription]struct{}
	ghosts  []ghost
	moves   map[uint32]*pendingMove // by inotify cookie
	ending  []*view                 // views to end after the next seal
	frame   []change
	frameAt time.Time // when the first change of frame arrived
	base    uint64    // ids of this Notifier are above base
	seq     uint64    // id of the last sealed frame
	history []*frame  // ring, oldest first from histStart
	histAt  int
	idCache map[uint64]string // directory inode → path relative to root
	fds     map[*node]int     // descriptors opened for the work in progress
	lost    []*node           // tops found outside root, to remove
	stats   Stats

	watchLimitHit bool // a watch was refused with ENOSPC since last reset
}

type ghost struct {
	node *node
	rec  bool
	at   time.Time
}

type pendingMove struct {
	entry *entry // nil when the source entry was not indexed
	isDir bool
	at    time.Time
}

// New starts watching root. The root directory must exist.
func New(cfg Config) (*Notifier, error) {
	cfg = cfg.withDefaults()
	if cfg.Root == "" {
		return nil, errors.New("notifier: root is required")
	}
	abs, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("notifier: root %q: %w", cfg.Root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("notifier: root %q: %w", cfg.Root, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("notifier: root %q: %w", cfg.Root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("notifier: root %q is not a directory", cfg.Root)
	}
	rootFD, err := unix.Open(real, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("notifier: opening root %q: %w", cfg.Root, err)
	}
	rs, err := statAt(rootFD, ".", false)
	if err != nil {
		unix.Close(rootFD)
		return nil, fmt.Errorf("notifier: stat root %q: %w", cfg.Root, err)
	}
	in, err := newInotify()
	if err != nil {
		unix.Close(rootFD)
		if errors.Is(err, unix.EMFILE) {
			return nil, fmt.Errorf("notifier: creating an inotify instance: %w (raise the sysctl fs.inotify.max_user_instances)", err)
		}
		return nil, fmt.Errorf("notifier: creating an inotify instance: %w", err)
	}
	now := uint64(time.Now().UnixMicro())
	n := &Notifier{
		cfg:        cfg,
		log:        cfg.Logger,
		root:       real,
		rootFD:     rootFD,
		rootDev:    rs.dev,
		rootIno:    rs.ino,
		in:         in,
		wakeLoop:   make(chan struct{}, 1),
		addWatchFn: unix.InotifyAddWatch,
		closing:    make(chan struct{}),
		nodes:      make(map[int32]*node),
		byDir:      make(map[dirKey][]*view),
		subs:       make(map[*Subscription]struct{}),
		moves:      make(map[uint32]*pendingMove),
		base:       now,
		seq:        now,
		idCache:    make(map[uint64]string),
		fds:        make(map[*node]int),
	}
	wires, err := newWireHub(n)
	if err != nil {
		unix.Close(rootFD)
		in.f.Close()
		return nil, fmt.Errorf("notifier: creating an epoll instance: %w", err)
	}
	n.wires = wires
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
	if n.closed {
		n.mu.Unlock()
		n.loopDone.Wait()
		n.streams.Wait()
		n.wires.close()
		return nil
	}
	n.closed = true
	subs := make([]*Subscription, 0, len(n.subs))
	for s := range n.subs {
		subs = append(subs, s)
	}
	n.mu.Unlock()

	for _, s := range subs {
		s.interrupt()
		s.finish(endClosing)
	}
	close(n.closing)
	err := n.in.f.Close() // unblocks the reader; the kernel drops every watch
	n.loopDone.Wait()
	n.streams.Wait()
	n.wires.close()

	n.mu.Lock()
	for _, x := range n.nodes {
		x.gone = true
	}
	n.nodes = map[int32]*node{}
	n.ghosts = nil
	n.history = nil
	n.mu.Unlock()
	n.rootMu.Lock()
	closeFD(n.rootFD)
	n.rootFD = -1
	n.rootMu.Unlock()
	return err
}

func (n *Notifier) isClosed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closed
}

// Stats returns counters and gauges of n.
func (n *Notifier) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats
	s.Subscribers = len(n.subs)
	s.Watches = len(n.nodes)
	s.Lingering = len(n.ghosts)
	s.Frames = n.seq - n.base
	s.TakenOver = n.wires.streams()
	return s
}

func (n *Notifier) kick() {
	select {
	case n.wakeLoop <- struct{}{}:
	default:
	}
}

// read drains the inotify descriptor into the backlog until Close.
func (n *Notifier) read() {
	defer n.loopDone.Done()
	buf := make([]byte, 64*1024)
	var evs []rawEvent
	for {
		k, err := n.in.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-n.closing:
				return
			default:
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			n.log.Error("reading inotify events", zap.Error(err))
			return
		}
		evs = decodeEvents(buf[:k], time.Now().UnixNano(), evs[:0])
		n.backlogMu.Lock()
		if len(n.backlog)+len(evs) > maxBacklog {
			if !n.dropped {
				n.backlog = append(n.backlog, overflowEvent)
				n.dropped = true
			}
		} else {
			n.dropped = false
			n.backlog = append(n.backlog, evs...)
		}
		n.backlogMu.Unlock()
		n.kick()
	}
}

// loop processes the backlog and runs the timers: batch windows, rename
// pairing and lingering watches.
func (n *Notifier) loop() {
	defer n.loopDone.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var spare []rawEvent
	for {
		select {
		case <-n.closing:
			return
		case <-n.wakeLoop:
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
	if len(n.ghosts) > 0 {
		keep := n.ghosts[:0]
		for _, g := range n.ghosts {
			if !now.Before(g.at) {
				n.release(g.node, g.rec)
			} else {
				keep = append(keep, g)
				due(g.at)
			}
		}
		clear(n.ghosts[len(keep):])
		n.ghosts = keep
	}
	if len(n.frame) > 0 {
		if n.cfg.Batch < 0 || now.Sub(n.frameAt) >= n.cfg.Batch {
			n.seal()
		} else {
			due(n.frameAt.Add(n.cfg.Batch))
		}
	}
	return next
}
