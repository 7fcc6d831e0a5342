package cluster

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Generations are random, never counted: after Redis loses a key, or a key
// expires, the new value matches no entry any replica still holds, so a
// loss can only cause misses.
const generationTTL = 24 * time.Hour

// The scripts run atomically in Redis; each touches the keys of one
// resource only (one hash slot). Every script is safe to run twice, as a
// client retry after a lost reply may do.
var (
	// acquireScript takes the lock for ARGV[1] with a lease of ARGV[2] ms,
	// or tells who holds it and how long its lease has left, and marks the
	// resource wanted by ARGV[1] (for as long as a lease), so that its
	// release wakes the waiters. On success it returns the resource's
	// generation and replaces it with ARGV[3], so that no entry filled before survives a
	// holder that dies mid-write, and publishes the resource (ARGV[6]) on
	// the changed channel (ARGV[5]): every mirror forgets it before the
	// write is forwarded. A retried acquire that had succeeded finds its
	// own token and keeps the lock. A lock a release handed to ARGV[1]
	// ('~' and its token, see releaseScript) is taken as a free one. SET
	// with both NX and GET (Redis 7.0)
	// takes the lock and reads the holder in one call: each call a script
	// makes costs Redis about as much as a small command.
	acquireScript = redis.NewScript(`
local cur = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2], 'GET')
if cur == '~' .. ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  cur = false
end
if not cur then
  local gen = redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'GET') or ''
  redis.call('PUBLISH', ARGV[5], ARGV[6])
  return {1, gen}
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, redis.call('GET', KEYS[2]) or ''}
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return {0, redis.call('PTTL', KEYS[1]), cur}
`)

	// renewScript extends the lease of the holder ARGV[1] to ARGV[2] ms.
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

	// releaseScript releases the lock of holder ARGV[1], sets the
	// generation the holder leaves (ARGV[2]) and, if anyone waits, wakes
	// the waiters of every replica by publishing the resource (ARGV[5]) on
	// the released channel (ARGV[4]): a waiter marked the resource wanted
	// after the last release, since it found the lock held. The lock is
	// handed to the waiter that marked it last: the key holds '~' and its
	// token for ARGV[8] ms, long enough for the woken waiter to take it
	// and short enough that one gone meanwhile blocks no one for long. So
	// a replica whose own writers queue for the resource does not take
	// the lock again ahead of the other replicas' waiters.
	// If the generation is no longer the one the holder set when it took
	// the lock (ARGV[6]), a write without the lock changed it meanwhile,
	// and a fresh one (ARGV[7]) is set instead, which no entry carries. It
	// returns the generation it left, which the holder's own mirror keeps,
	// and the token of the waiter that last marked the resource wanted, if
	// any. A holder whose lease ended touches nothing (and gets {0, ''}),
	// except its own mark as a waiter, as a waiter that gave up releases
	// the lock it may have been handed. No mirror needs telling: none
	// kept the resource after the acquire was published, and none stores
	// a generation read while it was locked.
	releaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] and cur ~= '~' .. ARGV[1] then
  if redis.call('GET', KEYS[3]) == ARGV[1] then
    redis.call('DEL', KEYS[3])
  end
  return {0, ''}
end
local gen = ARGV[2]
if redis.call('SET', KEYS[2], gen, 'PX', ARGV[3], 'GET') ~= ARGV[6] then
  gen = ARGV[7]
  redis.call('SET', KEYS[2], gen, 'PX', ARGV[3])
end
local wanted = redis.call('GETDEL', KEYS[3])
if wanted and wanted ~= ARGV[1] then
  redis.call('SET', KEYS[1], '~' .. wanted, 'PX', ARGV[8])
else
  redis.call('DEL', KEYS[1])
end
if not wanted then
  return {gen, ''}
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return {gen, wanted}
`)

	// generationScript returns the generation a read may fill the cache
	// with: none while the resource is locked (a write may be committing
	// upstream), else the current one, created as ARGV[1] if missing. The
	// creation is not published: a mirror that still holds a generation
	// from before the key expired holds one that no write has changed
	// since, and the next write's messages reach it.
	generationScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local gen = redis.call('GET', KEYS[2])
if not gen then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  gen = ARGV[1]
end
return gen
`)

	// invalidateScript gives the resource a new generation (ARGV[1]) at
	// once, for a write that takes no lock, and publishes it (ARGV[3] the
	// channel, ARGV[4] the resource).
	invalidateScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`)

	// bootScript marks a Redis that has no marker, which means it started
	// empty, and holds every lock for one lease (ARGV[2] ms): the leases
	// it forgot may still have writes in flight.
	bootScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
end
return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[2])}
`)
)

// loadScripts loads every script into Redis's script cache, for
// pipelines, whose EVALSHA cannot fall back to EVAL one by one.
func loadScripts(ctx context.Context, rdb *redis.Client) error {
	for _, s := range []*redis.Script{acquireScript, renewScript, releaseScript, generationScript, invalidateScript, bootScript} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// newGeneration returns a random generation; zero is never one.
func newGeneration() uint64 {
	for {
		if g := rand.Uint64(); g != 0 {
			return g
		}
	}
}

// parseGeneration reads a generation stored by this package. A missing or
// foreign value becomes a new random one, which matches no cache entry;
// ok is false then.
func parseGeneration(s string) (g uint64, ok bool) {
	g, err := strconv.ParseUint(s, 10, 64)
	if err != nil || g == 0 {
		return newGeneration(), false
	}
	return g, true
}

func formatGeneration(g uint64) string { return strconv.FormatUint(g, 10) }

// newToken returns a lock holder's token: 128 random bits.
func newToken() string {
	var b [32]byte
	buf := strconv.AppendUint(b[:0], rand.Uint64(), 36)
	buf = append(buf, '.')
	buf = strconv.AppendUint(buf, rand.Uint64(), 36)
	return string(buf)
}

func ms(d time.Duration) int64 { return d.Milliseconds() }
