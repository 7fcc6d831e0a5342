package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/zeebo/xxh3"
)

// resourceKey identifies a resource: the hash of its key template's value.
// Locks and generations are per resource; cache entries are per variant.
type resourceKey = xxh3.Uint128

// variantKey identifies one cached representation of a resource: the
// resource key mixed with the values of the configured vary headers.
type variantKey = xxh3.Uint128

// entry is what the cache remembers of a representation.
type entry struct {
	check        uint64 // the high half of the variantKey, against 64-bit collisions
	gen          uint64 // the resource's generation when the read began
	etag         string
	lastModified int64  // Unix seconds, 0 when unknown
	varyNames    string // the upstream's Vary field, canonical
	varyHash     uint64 // the request's values of the varyNames headers
	// The fields of the 200 that a 304 answered from the cache repeats
	// (RFC 9110 §15.4.5), each with its lines joined.
	cacheControl, contentLocation, expires, vary string
}

// generations is a striped table of per-resource counters. A write bumps its
// resource's counter; a cache entry is valid only while the counter still
// has the value it had when the read that filled it began. Because
// ristretto applies Sets asynchronously, this is what keeps a slow read's
// fill from outliving the write that invalidated it. Stripes are shared by
// unrelated resources, which can only cause a spurious miss.
const generationStripes = 1 << 14

// etagCache maps variants to their current ETag.
type etagCache struct {
	c    *ristretto.Cache[uint64, entry]
	ttl  time.Duration
	gens [generationStripes]atomic.Uint64
	// shared: the generations that count are the cluster's (see Cluster);
	// gens then serve only this process's locked writes' leases.
	shared bool
}

// cacheOn reports whether anything reads the cache, and so whether reads
// and checks fill it.
func (m *Middleware) cacheOn() bool {
	return m.cfg.Verify == VerifyCache || m.cfg.Revalidate == RevalidateCache
}

func newETagCache(maxCost int64, ttl time.Duration, shared bool) (*etagCache, error) {
	// About 100 bytes per entry; ristretto wants ten counters per item.
	counters := maxCost / 100 * 10
	if counters < 1000 {
		counters = 1000
	}
	c, err := ristretto.NewCache(&ristretto.Config[uint64, entry]{
		NumCounters: counters,
		MaxCost:     maxCost,
		BufferItems: 64,
		KeyToHash:   func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, fmt.Errorf("etag cache: %w", err)
	}
	return &etagCache{c: c, ttl: ttl, shared: shared}, nil
}

func (c *etagCache) close() { c.c.Close() }

func (c *etagCache) gen(rk resourceKey) *atomic.Uint64 {
	return &c.gens[rk.Lo%generationStripes]
}

// generation returns the resource's generation, to be taken before the read
// whose result may fill the cache.
func (c *etagCache) generation(rk resourceKey) uint64 { return c.gen(rk).Load() }

// invalidate makes every cached variant of the resource stale.
func (c *etagCache) invalidate(rk resourceKey) { c.gen(rk).Add(1) }

// get returns the fresh entry for the variant of r, if any, while its
// resource is at generation gen.
func (c *etagCache) get(vk variantKey, gen uint64, h http.Header) (entry, bool) {
	e, ok := c.c.Get(vk.Lo)
	if !ok || e.check != vk.Hi || e.gen != gen {
		return entry{}, false
	}
	if e.varyNames != "" && e.varyHash != hashVary(e.varyNames, h) {
		return entry{}, false
	}
	return e, true
}

// fill records an ETag read at generation gen, unless the resource was
// written since; an unchanged entry is left alone so that hot reads do not
// churn the cache. With shared generations the check is left to get, which
// compares with the cluster's.
func (c *etagCache) fill(rk resourceKey, vk variantKey, gen uint64, etag string, lastModified time.Time, reqHeader, respHeader http.Header) {
	if !c.shared && c.generation(rk) != gen {
		return
	}
	vary := respHeader.Values("Vary")
	var names string
	if len(vary) > 0 {
		names = strings.ToLower(strings.Join(vary, ","))
		if strings.Contains(names, "*") {
			return // Vary: * means no two requests share a representation
		}
	}
	var lm int64
	if !lastModified.IsZero() {
		lm = lastModified.Unix()
	}
	e := entry{
		check: vk.Hi, gen: gen, etag: etag, lastModified: lm, varyNames: names,
		cacheControl:    joined(respHeader["Cache-Control"]),
		contentLocation: joined(respHeader["Content-Location"]),
		expires:         joined(respHeader["Expires"]),
		vary:            joined(vary),
	}
	if names != "" {
		e.varyHash = hashVary(names, reqHeader)
	}
	if old, ok := c.c.Get(vk.Lo); ok && old == e {
		return
	}
	cost := len(etag) + len(names) + len(e.cacheControl) + len(e.contentLocation) + len(e.expires) + len(e.vary) + 96
	c.c.SetWithTTL(vk.Lo, e, int64(cost), c.ttl)
}

// joined gives a field's lines as one value, as RFC 9110 §5.3 allows.
func joined(lines []string) string {
	if len(lines) == 1 {
		return lines[0]
	}
	return strings.Join(lines, ", ")
}

// hashVary hashes the request's values of the comma-separated header names.
func hashVary(names string, h http.Header) uint64 {
	var acc uint64
	for name := range strings.SplitSeq(names, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		acc = xxh3.HashStringSeed(name, acc)
		for _, v := range h.Values(name) {
			acc = xxh3.HashStringSeed(v, acc^0x9e3779b97f4a7c15)
		}
	}
	return acc
}

// mix folds one string into a running 128-bit key; every part is hashed
// separately, so part boundaries count.
func mix(k xxh3.Uint128, s string) xxh3.Uint128 {
	return xxh3.HashString128Seed(s, k.Lo^(k.Hi*0x9e3779b97f4a7c15)^uint64(len(s)))
}

// variantOf derives the variant key of a resource from the request's values
// of the configured vary headers.
func variantOf(rk resourceKey, vary []string, h http.Header) variantKey {
	k := rk
	for _, name := range vary {
		vs := h[name]
		k = mix(k, name)
		for _, v := range vs {
			k = mix(k, v)
		}
	}
	return k
}
