package cluster

import (
	"encoding/hex"

	"github.com/zeebo/xxh3"
)

// keys names one resource's keys in Redis. The resource's id sits in
// braces, so its lock and generation share a hash slot and one script can
// touch both on Redis Cluster.
type keys struct {
	rk xxh3.Uint128
	id string // the resource key's hash in hex: no user data reaches Redis
	// lock holds the holder's token, with the lease as expiry, or for a
	// moment after a release, '~' and the token of the waiter it was
	// handed to.
	lock string
	gen  string // the resource's cache generation
	// wanted holds the token of the waiter that last found the lock held:
	// only then does a release publish, and it hands the lock to that one.
	wanted string
}

func (c *Client) keys(rk xxh3.Uint128) keys {
	b := rk.Bytes()
	id := hex.EncodeToString(b[:])
	base := c.prefix + "{r:" + id + "}:"
	return keys{rk: rk, id: id, lock: base + "lock", gen: base + "gen", wanted: base + "wanted"}
}

// releasedChannel carries the id of every resource whose lock is released.
func (c *Client) releasedChannel() string { return c.prefix + "released" }

// changedChannel carries the id of every resource whose generation
// changes or that is locked: the mirror must forget it.
func (c *Client) changedChannel() string { return c.prefix + "changed" }

// bootKeys mark the data Redis holds: their loss means Redis lost every
// lock, and none may be granted for one lease.
func (c *Client) bootKeys() (id, hold string) {
	return c.prefix + "{boot}:id", c.prefix + "{boot}:hold"
}
