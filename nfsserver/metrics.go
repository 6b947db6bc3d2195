package nfsserver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus metrics, on a registry it owns.
type metrics struct {
	registry *prometheus.Registry
	// running is 1 while the ganesha process is alive; up is 1 while it answered the last probe.
	running, up prometheus.Gauge
	starts      prometheus.Counter
	// exits counts ganesha exits by reason: stopped (asked to), failed (on its own), killed (the
	// gate closed or it ignored SIGTERM).
	exits *prometheus.CounterVec
	// probes times RPC NULL calls by result: ok or error.
	probes *prometheus.HistogramVec
}

func newMetrics() *metrics {
	const ns, sub = "sharewarden", "nfsserver"
	m := &metrics{
		registry: prometheus.NewRegistry(),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_running",
			Help: "1 while the ganesha process is alive.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_up",
			Help: "1 while ganesha answered the last RPC NULL call on its NFS port.",
		}),
		starts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_starts_total",
			Help: "ganesha processes started.",
		}),
		exits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_exits_total",
			Help: "ganesha process exits by reason: stopped (on request), failed (on its own), killed.",
		}, []string{"reason"}),
		probes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "probe_duration_seconds",
			Help:    "Duration of RPC NULL calls to ganesha by result (ok, error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"result"}),
	}
	for _, reason := range []string{exitStopped, exitFailed, exitKilled} {
		m.exits.WithLabelValues(reason)
	}
	m.registry.MustRegister(m.running, m.up, m.starts, m.exits, m.probes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

const (
	exitStopped = "stopped"
	exitFailed  = "failed"
	exitKilled  = "killed"
)
