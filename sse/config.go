package sse

import (
	"errors"
	"time"

	"go.uber.org/zap"
)

// Config configures a Hub. New uses it as given: start from DefaultConfig.
type Config struct {
	// Keepalive is the interval of comment lines on an idle stream.
	Keepalive time.Duration
	// Batch is how long notifications are gathered into one frame; a
	// negative one sends each as soon as the hub's goroutine gets to it.
	Batch time.Duration
	// Queue is how many events a subscriber may have waiting before it is
	// cut off.
	Queue int
	// History is how many recent frames are kept for Last-Event-ID replay.
	History int
	// MaxSubscribers bounds the streams open at once.
	MaxSubscribers int
	// Logger receives the hub's logs.
	Logger *zap.Logger
}

// Defaults of Config.
const (
	DefaultKeepalive      = 15 * time.Second
	DefaultBatch          = 50 * time.Millisecond
	DefaultQueue          = 1024
	DefaultHistory        = 4096
	DefaultMaxSubscribers = 10000
)

// DefaultConfig returns the defaults, logging nowhere.
func DefaultConfig() Config {
	return Config{
		Keepalive:      DefaultKeepalive,
		Batch:          DefaultBatch,
		Queue:          DefaultQueue,
		History:        DefaultHistory,
		MaxSubscribers: DefaultMaxSubscribers,
		Logger:         zap.NewNop(),
	}
}

const (
	// MaxFrame bounds the notifications in one frame; a busier batch
	// window is sent as several frames.
	MaxFrame = 512
	// writeTimeout bounds one write to a client: a client that accepts no
	// bytes for this long is disconnected.
	writeTimeout = 10 * time.Second
	// closeTimeout bounds the last writes of streams ended by Close.
	closeTimeout = time.Second
)

// Overflow reasons the hub sends itself, as the data of an
// `event: overflow`. Sources add their own (Hub.Overflow).
const (
	ReasonSubscriberQueue = "subscriber_queue" // this subscriber fell a whole queue behind
	ReasonHistory         = "history"          // Last-Event-ID is not in the history
)

// Errors Subscribe fails with.
var (
	ErrClosed             = errors.New("sse: the hub is closed")
	ErrTooManySubscribers = errors.New("sse: max_subscribers reached")
)

// Stats is a snapshot of a hub's counters, for tests and metrics.
type Stats struct {
	Subscribers int    // streams open now
	TakenOver   int    // of which on connections taken over from net/http
	Frames      uint64 // frames delivered
	CutOff      uint64 // subscribers cut off for a full queue
}
