package cluster

import (
	"encoding/binary"
	"encoding/hex"
	"sync"
	"sync/atomic"

	"github.com/zeebo/xxh3"
)

// mirror remembers the generations this process read from Redis, so that
// a read needs no round trip while its resource is unchanged. It stays
// true because every script that changes a generation (or locks the
// resource) publishes the resource on the changed channel in the same
// atomic step, and this process's subscription forgets the resource when
// the message arrives. While the subscription is not known to be live
// (before it is confirmed, after an error, while pings go unanswered) the
// mirror answers nothing, and it is emptied before it answers again: a
// message lost with a connection can only cost round trips, never a stale
// answer.
//
// Slots are shared by unrelated resources, which can only cause a miss.
type mirror struct {
	slots [mirrorSlots]atomic.Pointer[mirrored]
	live  atomic.Bool

	mu    sync.Mutex // orders stores against emptying
	epoch uint64     // changes whenever the mirror goes down or up
}

const mirrorSlots = 1 << 16

// mirrored is one slot's content. Every value is a fresh allocation, so a
// slot that still holds the pointer seen before a round trip has not been
// touched since. gen 0 marks a forgotten resource.
type mirrored struct {
	rk  xxh3.Uint128
	gen uint64
}

// seen is what a lookup saw, for the store that follows its round trip.
type seen struct {
	p     *mirrored
	epoch uint64
	ok    bool // the mirror was live
}

func (m *mirror) slot(rk xxh3.Uint128) *atomic.Pointer[mirrored] {
	return &m.slots[rk.Lo%mirrorSlots]
}

// lookup returns rk's generation when the mirror knows it; otherwise what
// it saw, to pass to store with the answer Redis gives.
func (m *mirror) lookup(rk xxh3.Uint128) (uint64, seen) {
	if !m.live.Load() {
		return 0, seen{}
	}
	p := m.slot(rk).Load()
	if p != nil && p.gen != 0 && p.rk == rk {
		return p.gen, seen{}
	}
	m.mu.Lock()
	s := seen{p: p, epoch: m.epoch, ok: m.live.Load()}
	m.mu.Unlock()
	return 0, s
}

// store remembers gen, read from Redis after lookup saw s, unless the slot
// changed or the mirror went down since: a change published meanwhile may
// postdate the answer.
func (m *mirror) store(rk xxh3.Uint128, gen uint64, s seen) {
	if !s.ok || gen == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.epoch == s.epoch && m.live.Load() {
		m.slot(rk).CompareAndSwap(s.p, &mirrored{rk: rk, gen: gen})
	}
}

// forget drops rk: its generation changed, or it is locked.
func (m *mirror) forget(rk xxh3.Uint128) {
	m.slot(rk).Store(&mirrored{rk: rk})
}

// forgetID drops the resource a message names by its id (keys.id).
func (m *mirror) forgetID(id string) {
	var b [16]byte
	if len(id) != 2*len(b) {
		m.down() // not one of ours: trust nothing
		m.up()
		return
	}
	if _, err := hex.Decode(b[:], []byte(id)); err != nil {
		m.down()
		m.up()
		return
	}
	m.forget(xxh3.Uint128{Hi: binary.BigEndian.Uint64(b[:8]), Lo: binary.BigEndian.Uint64(b[8:])})
}

// down stops answering: changes may be going unheard.
func (m *mirror) down() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live.Load() {
		m.live.Store(false)
		m.epoch++
	}
}

// up empties the mirror and answers again: the subscription is live, and
// every change from now on will be heard.
func (m *mirror) up() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live.Load() {
		return
	}
	for i := range m.slots {
		if m.slots[i].Load() != nil {
			m.slots[i].Store(nil)
		}
	}
	m.epoch++
	m.live.Store(true)
}
