package caddymodule

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/etaggate/etaggate/notifier"
)

// notifyCollector exports a Notifier's counters in Caddy's metrics. It reads
// them at scrape time, so the streaming path does no metrics work.
type notifyCollector struct {
	engine *notifier.Notifier
	labels []string // root, prefix

	subscribers, takenOver, watches, frames, cutOff, overflows *prometheus.Desc
}

func newNotifyCollector(engine *notifier.Notifier, prefix string) *notifyCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("caddy", "fs_notify", name), help, []string{"root", "prefix"}, nil)
	}
	return &notifyCollector{
		engine:      engine,
		labels:      []string{engine.Root(), prefix},
		subscribers: desc("subscribers", "Change-notification streams open now."),
		takenOver:   desc("subscribers_taken_over", "Open streams written by the hub's own writers rather than a goroutine each."),
		watches:     desc("watches", "Directories watched through inotify."),
		frames:      desc("frames_total", "Frames produced: the notifications of one batch window, numbered by one SSE event id."),
		cutOff:      desc("subscribers_cut_off_total", "Subscribers disconnected for falling a whole queue behind."),
		overflows:   desc("kernel_overflows_total", "inotify queue overflows, each answered with a rescan and an overflow event."),
	}
}

func (c *notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.subscribers, c.takenOver, c.watches, c.frames, c.cutOff, c.overflows} {
		ch <- d
	}
}

func (c *notifyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.engine.Stats()
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, c.labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, c.labels...)
	}
	gauge(c.subscribers, float64(s.Subscribers))
	gauge(c.takenOver, float64(s.TakenOver))
	gauge(c.watches, float64(s.Watches))
	counter(c.frames, float64(s.Frames))
	counter(c.cutOff, float64(s.CutOff))
	counter(c.overflows, float64(s.KernelOverflows))
}

// registerNotifyCollector adds c to reg. A second fs_notify handler on the
// same root and prefix in one configuration would export the same series;
// its registration is skipped, which the caller logs.
func registerNotifyCollector(reg prometheus.Registerer, c *notifyCollector) (registered bool, err error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
