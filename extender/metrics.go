package extender

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sharewarden/sharewarden/report"
)

// Metric names, for dashboards and tests.
const (
	MetricRequests    = "sharewarden_extender_requests_total"
	MetricBadRequests = "sharewarden_extender_bad_requests_total"
	MetricLatency     = "sharewarden_extender_request_duration_seconds"
	MetricFiltered    = "sharewarden_extender_filtered_nodes_total"
	MetricNodes       = "sharewarden_extender_request_nodes"
)

// metrics are the Server's own, on the registry it owns.
type metrics struct {
	requests    *prometheus.CounterVec
	badRequests *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	filtered    *prometheus.CounterVec
	nodes       *prometheus.HistogramVec
}

// newMetrics registers the metrics with reg (the Server's own, from report.NewRegistry).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "Extender requests answered, by verb and pod kind (server, consumer, other).",
		}, []string{"verb", "kind"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBadRequests, Help: "Requests refused with 400 or 405 (undecodable or oversized ExtenderArgs, unknown verb, wrong method), by verb.",
		}, []string{"verb"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricLatency,
			Help:    "Time to answer a request, from reading the body to writing the answer, by verb and pod kind.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"verb", "kind"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFiltered, Help: "Nodes filtered out, by pod kind and reason.",
		}, []string{"kind", "reason"}),
		nodes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricNodes,
			Help:    "Nodes per request, by verb.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}, []string{"verb"}),
	}
	m.requests = report.Register(reg, m.requests)
	m.badRequests = report.Register(reg, m.badRequests)
	m.latency = report.Register(reg, m.latency)
	m.filtered = report.Register(reg, m.filtered)
	m.nodes = report.Register(reg, m.nodes)
	return m
}
