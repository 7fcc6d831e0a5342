// Package notifier streams change notifications for a local directory tree
// as server-sent events, in the shape of Qumulo Core's
// /v1/files/<ref>/notify API, through an sse.Hub.
//
// One inotify instance per Notifier serves every subscriber. Directory
// watches are reference-counted by the subscriptions that need them, and a
// tree index remembers, for every entry of a watched directory, its file ID
// (inode), type, size, mode, owner, group, times and extended attributes,
// so that inotify's coarse events (IN_MODIFY, IN_ATTRIB, IN_ACCESS) are
// turned into Qumulo's exact types by comparing before and after: the
// whole mapping is notificationTypes, in eventmap_linux.go.
//
// The parts, each in its own file: reading inotify (inotify_linux.go),
// the tree index (index_linux.go), applying events to it
// (events_linux.go), resolving refs (resolve_linux.go), subscriptions
// and their watches (subscribe_linux.go), what a stream sees
// (topic_linux.go) and the HTTP endpoint (handler_linux.go).
package notifier

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/etaggate/etaggate/internal/problem"
	"github.com/etaggate/etaggate/sse"
)

// Config configures a Notifier. New uses it as given: start from
// DefaultConfig.
type Config struct {
	// Root is the directory tree that can be watched; nothing outside it is
	// ever opened, watched or reported.
	Root string
	// Prefix is the URL path before the ref, without a trailing slash
	// ("" for none).
	Prefix string
	// Hub configures the streams: keep-alive, batch window, queue,
	// history, max_subscribers. Its Logger is Logger.
	Hub sse.Config
	// Linger keeps a directory watched this long after its last subscriber
	// left, so a client that reconnects with Last-Event-ID can be replayed
	// what it missed; 0 or less releases at once.
	Linger time.Duration
	// Logger receives the engine's logs.
	Logger *zap.Logger
	// RouteError hands a refusal to the server's error routes (Caddy's
	// handle_errors), for Serve; nil: problem documents.
	RouteError problem.Router
}

// Defaults of Config.
const (
	DefaultPrefix = "/v1/files"
	DefaultLinger = 30 * time.Second
)

// DefaultConfig returns the defaults, with no root, logging nowhere.
func DefaultConfig() Config {
	return Config{
		Prefix: DefaultPrefix,
		Hub:    sse.DefaultConfig(),
		Linger: DefaultLinger,
		Logger: zap.NewNop(),
	}
}

const (
	// moveWait is how long a rename's IN_MOVED_FROM waits for its
	// IN_MOVED_TO before it is taken for a move out of the watched tree.
	moveWait = 100 * time.Millisecond
	// clockSlack is how far file system timestamps (taken from the
	// kernel's coarse clock) may lag behind time.Now.
	clockSlack = 10 * time.Millisecond
	// maxBacklog bounds inotify events read from the kernel but not yet
	// processed; past it they are dropped and reported as an overflow.
	maxBacklog = 1 << 20
	// minGather and maxGather bound how long the reader rests after
	// handing events on (gatherFor).
	minGather = 5 * time.Millisecond
	maxGather = 25 * time.Millisecond
)

// gatherFor is how long the reader rests after handing events on, for a
// hub that gathers notifications for batch: half of it, within bounds. A
// burst then reaches the loop in a few large batches rather than many
// small ones, each of which costs several thread wake-ups and the opening
// of the directories it touches. Events read are never held back by it;
// the kernel queue (16,384 events by default) fills in no less than a
// quarter of a second at the fastest bursts.
func gatherFor(batch time.Duration) time.Duration {
	return min(max(batch/2, minGather), maxGather)
}

// Overflow reasons of the file source, besides the hub's own.
const (
	reasonKernelQueue = "kernel_queue" // the kernel dropped events
	reasonWatchLimit  = "watch_limit"  // a new subdirectory could not be watched
)

// Errors a subscription can fail with, besides the hub's sse.ErrClosed
// and sse.ErrTooManySubscribers.
var (
	ErrWatchLimit    = errors.New("notifier: inotify watch limit reached; raise the sysctl fs.inotify.max_user_watches")
	ErrNotFound      = errors.New("notifier: no such directory below root")
	ErrOutsideRoot   = errors.New("notifier: ref is outside root")
	ErrNotDirectory  = errors.New("notifier: ref is not a directory")
	ErrUnsupportedOS = errors.New("notifier: fs_notify needs Linux inotify")
)

// Stats is a snapshot of a Notifier's state, for tests and metrics.
type Stats struct {
	sse.Stats              // the streams
	Watches         int    // directories watched through inotify
	Lingering       int    // released subscriptions still holding their watches
	KernelOverflows uint64 // inotify queue overflows
}
