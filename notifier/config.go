// Package notifier streams change notifications for a local directory tree
// as server-sent events, in the shape of Qumulo Core's
// /v1/files/<ref>/notify API.
//
// One inotify instance per Notifier serves every subscriber. Directory
// watches are reference-counted by the subscriptions that need them, and a
// tree index remembers, for every entry of a watched directory, its file ID
// (inode), type, size, mode, owner, group, times and extended attributes,
// so that inotify's coarse events (IN_MODIFY, IN_ATTRIB, IN_ACCESS) are
// turned into Qumulo's exact types by comparing before and after.
//
// Events are gathered for a batch window into frames with monotonic ids;
// every subscriber gets the part of each frame that concerns it through a
// bounded queue, and a history of recent frames answers Last-Event-ID.
package notifier

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// Config configures a Notifier. Zero values mean the defaults below.
type Config struct {
	// Root is the directory tree that can be watched; nothing outside it is
	// ever opened, watched or reported. Required.
	Root string
	// Prefix is the URL path before the ref. Default "/v1/files".
	Prefix string
	// Keepalive is the interval of comment lines on an idle stream.
	// Default 15s.
	Keepalive time.Duration
	// Batch is how long events are gathered into one payload. Default
	// 50ms; negative sends every processed burst at once.
	Batch time.Duration
	// Queue is the backlog, in payloads, a subscriber may have before it is
	// cut off. Default 1024.
	Queue int
	// History is the number of recent payloads kept for Last-Event-ID
	// replay. Default 4096.
	History int
	// MaxSubscribers bounds concurrent streams. Default 10000.
	MaxSubscribers int
	// Linger keeps a directory watched this long after its last subscriber
	// left, so a client that reconnects with Last-Event-ID can be replayed
	// what it missed. Default 30s; negative releases at once.
	Linger time.Duration
	// Logger receives the engine's logs. Default: none.
	Logger *zap.Logger
}

// Defaults of Config.
const (
	DefaultPrefix         = "/v1/files"
	DefaultKeepalive      = 15 * time.Second
	DefaultBatch          = 50 * time.Millisecond
	DefaultQueue          = 1024
	DefaultHistory        = 4096
	DefaultMaxSubscribers = 10000
	DefaultLinger         = 30 * time.Second
)

const (
	// writeTimeout bounds one write to a client: a client that accepts no
	// bytes for this long is disconnected.
	writeTimeout = 10 * time.Second
	// closeTimeout bounds the last writes of streams ended by Close.
	closeTimeout = time.Second
	// moveWait is how long a rename's IN_MOVED_FROM waits for its
	// IN_MOVED_TO before it is taken for a move out of the watched tree.
	moveWait = 100 * time.Millisecond
	// maxFrame bounds the notifications in one payload; a busier batch
	// window is split into several payloads.
	maxFrame = 512
	// clockSlack is how far file system timestamps (taken from the
	// kernel's coarse clock) may lag behind time.Now.
	clockSlack = 10 * time.Millisecond
	// maxBacklog bounds raw events read from the kernel but not yet
	// processed; past it they are dropped and reported as an overflow.
	maxBacklog = 1 << 20
)

// Errors a subscription can fail with.
var (
	ErrClosed         = errors.New("notifier: closed")
	ErrTooManyStreams = errors.New("notifier: max_subscribers reached")
	ErrWatchLimit     = errors.New("notifier: inotify watch limit reached; raise the sysctl fs.inotify.max_user_watches")
	ErrNotFound       = errors.New("notifier: no such directory below root")
	ErrOutsideRoot    = errors.New("notifier: ref is outside root")
	ErrNotDirectory   = errors.New("notifier: ref is not a directory")
	ErrUnsupportedOS  = errors.New("notifier: fs_notify needs Linux inotify")
)

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	for len(c.Prefix) > 1 && c.Prefix[len(c.Prefix)-1] == '/' {
		c.Prefix = c.Prefix[:len(c.Prefix)-1]
	}
	if c.Prefix == "/" {
		c.Prefix = ""
	}
	if c.Keepalive <= 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Queue <= 0 {
		c.Queue = DefaultQueue
	}
	if c.History <= 0 {
		c.History = DefaultHistory
	}
	if c.MaxSubscribers <= 0 {
		c.MaxSubscribers = DefaultMaxSubscribers
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Stats is a snapshot of a Notifier's state, for tests and metrics.
type Stats struct {
	Subscribers int // streams open now
	TakenOver   int // of which on connections taken over from net/http
	Watches     int // directories watched through inotify
	Lingering   int // released subscriptions still holding their watches
	Frames      uint64
	CutOff      uint64 // subscribers cut off for a full queue
	Overflows   uint64 // kernel queue overflows
}
