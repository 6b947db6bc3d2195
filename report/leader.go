package report

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// CollectTimeout bounds how long one scrape of a LeaderCollector reads what it exports.
const CollectTimeout = 5 * time.Second

// LeaderCollector exports, when Prometheus scrapes, series read at that moment (from a
// manager's cache, say), and only once this replica leads, so that a second replica does not
// double every series. It counts the scrapes whose read failed; that counter is exported
// always, leader or not.
type LeaderCollector struct {
	descs []*prometheus.Desc
	// elected is closed once this replica leads (ctrl.Manager.Elected).
	elected <-chan struct{}
	collect func(ctx context.Context, emit func(prometheus.Metric)) error
	errors  prometheus.Counter
}

// NewLeaderCollector returns a collector of descs whose scrapes call collect once elected is
// closed: collect emits the series of descs, or returns an error (the scrape then exports none
// of them, and the counter of errorOpts goes up). Its context ends after CollectTimeout.
func NewLeaderCollector(elected <-chan struct{}, errorOpts prometheus.CounterOpts, collect func(ctx context.Context, emit func(prometheus.Metric)) error, descs ...*prometheus.Desc) *LeaderCollector {
	return &LeaderCollector{descs: descs, elected: elected, collect: collect, errors: prometheus.NewCounter(errorOpts)}
}

// Describe implements prometheus.Collector.
func (c *LeaderCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *LeaderCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	select {
	case <-c.elected:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), CollectTimeout)
	defer cancel()
	// Series are buffered until collect succeeds, so a failed read exports none of them.
	var series []prometheus.Metric
	if err := c.collect(ctx, func(m prometheus.Metric) { series = append(series, m) }); err != nil {
		c.errors.Inc()
		return
	}
	for _, m := range series {
		ch <- m
	}
}

// Errors is how many scrapes failed to read their series: the error counter's value.
func (c *LeaderCollector) Errors() float64 {
	m := &dto.Metric{}
	if err := c.errors.Write(m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
