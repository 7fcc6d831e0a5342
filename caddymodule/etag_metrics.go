package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etaggate/etaggate/proxy"
)

// etagCollector exports the figures of every etag handler of one
// configuration, summed, in that configuration's metrics registry. It
// reads them at scrape time, so the request path does no metrics work.
type etagCollector struct {
	mu      sync.Mutex
	engines map[*proxy.Middleware]struct{}

	buffered, spills *prometheus.Desc
}

func newETagCollector() *etagCollector {
	return &etagCollector{
		engines: map[*proxy.Middleware]struct{}{},
		buffered: prometheus.NewDesc(prometheus.BuildFQName("caddy", "etag", "buffered_bytes"),
			"Bytes of bodies the etag handlers hold now, in memory (within buffer_memory) or in temporary files.", []string{"storage"}, nil),
		spills: prometheus.NewDesc(prometheus.BuildFQName("caddy", "etag", "spills_total"),
			"Bodies that did not fit buffer_memory and went to a temporary file.", nil, nil),
	}
}

// addETagCollector registers the configuration's collector, or finds the
// one another etag handler registered, and adds engine to it.
func addETagCollector(reg prometheus.Registerer, engine *proxy.Middleware) (*etagCollector, error) {
	c := newETagCollector()
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*etagCollector)
		if !ok {
			return nil, err
		}
		c = existing
	}
	c.mu.Lock()
	c.engines[engine] = struct{}{}
	c.mu.Unlock()
	return c, nil
}

func (c *etagCollector) remove(engine *proxy.Middleware) {
	c.mu.Lock()
	delete(c.engines, engine)
	c.mu.Unlock()
}

func (c *etagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.buffered
	ch <- c.spills
}

func (c *etagCollector) Collect(ch chan<- prometheus.Metric) {
	var sum proxy.Stats
	c.mu.Lock()
	for e := range c.engines {
		s := e.Stats()
		sum.MemoryBytes += s.MemoryBytes
		sum.DiskBytes += s.DiskBytes
		sum.Spills += s.Spills
	}
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.buffered, prometheus.GaugeValue, float64(sum.MemoryBytes), "memory")
	ch <- prometheus.MustNewConstMetric(c.buffered, prometheus.GaugeValue, float64(sum.DiskBytes), "disk")
	ch <- prometheus.MustNewConstMetric(c.spills, prometheus.CounterValue, float64(sum.Spills))
}
