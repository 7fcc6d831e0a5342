package sse

import "time"

// Transport numbers the frames a hub sends and delivers them: to this
// hub alone (the default), or through a shared bus to every replica's hub,
// this one included, so that local and clustered fan-out are
// interchangeable.
//
// Ids are consecutive: each frame's id is the previous one's plus one,
// across every hub of the transport, and frames are delivered in id order.
// A hub replays Last-Event-ID from the frames it was delivered, so a gap
// in the ids it sees (a replica that missed some) makes a replay across
// it an overflow, never a silent loss; a transport that knows it lost
// frames delivers an overflow frame for them too.
type Transport[N any] interface {
	// Open is called once, by New, with the function that delivers a
	// numbered frame to the hub; it returns the id of the last frame sent
	// before, from which the hub's ids continue.
	Open(deliver func(*Frame[N])) (last uint64, err error)
	// Send numbers f and has it delivered. The hub calls it from one
	// goroutine at a time, in the order its windows were closed, and
	// without holding its lock: deliver may be called before Send returns.
	Send(f *Frame[N]) error
	// Close stops delivering. The hub calls it once its streams are done.
	Close() error
}

// local is the Transport of a hub on its own. Its ids are the microsecond
// time the hub was created plus a counter, so they increase across
// restarts and an id from an earlier run is recognisably not in the
// history.
type local[N any] struct {
	deliver func(*Frame[N])
	last    uint64
}

func (l *local[N]) Open(deliver func(*Frame[N])) (uint64, error) {
	l.deliver = deliver
	l.last = uint64(time.Now().UnixMicro())
	return l.last, nil
}

func (l *local[N]) Send(f *Frame[N]) error {
	l.last++
	f.ID = l.last
	l.deliver(f)
	return nil
}

func (l *local[N]) Close() error { return nil }
