package webhook

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sharewarden/sharewarden/report"
)

// metrics are the Server's own, on the registry it owns.
type metrics struct {
	requests  *prometheus.CounterVec
	denials   *prometheus.CounterVec
	mutations *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// Metric names, for dashboards and tests.
const (
	MetricRequests  = "sharewarden_webhook_requests_total"
	MetricDenials   = "sharewarden_webhook_denials_total"
	MetricMutations = "sharewarden_webhook_mutations_total"
	MetricErrors    = "sharewarden_webhook_errors_total"
	MetricLatency   = "sharewarden_webhook_request_duration_seconds"
)

// newMetrics registers the metrics with reg (the Server's own, from report.NewRegistry).
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "Admission requests received, by resource.",
		}, []string{"resource"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDenials, Help: "Admission requests denied by policy, by resource.",
		}, []string{"resource"}),
		mutations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricMutations, Help: "Admission requests answered with a patch, by resource and outcome.",
		}, []string{"resource", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricErrors, Help: "Admission requests that could not be decided (bad request or failed lookup), by resource and code.",
		}, []string{"resource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    MetricLatency,
			Help:    "Time to answer an admission request, by resource.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"resource"}),
	}
	m.requests = report.Register(reg, m.requests)
	m.denials = report.Register(reg, m.denials)
	m.mutations = report.Register(reg, m.mutations)
	m.errors = report.Register(reg, m.errors)
	m.latency = report.Register(reg, m.latency)
	return m
}
