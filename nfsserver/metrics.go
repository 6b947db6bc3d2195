package nfsserver

import (
	"github.com/prometheus/client_golang/prometheus"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// metrics are the agent's Prometheus metrics, on a registry it owns.
type metrics struct {
	registry *prometheus.Registry
	// volume registers on registry with the volume's labels added to every metric.
	volume prometheus.Registerer
	// running is 1 while the ganesha process is alive; up is 1 while it answered the last probe.
	running, up prometheus.Gauge
	// inGrace is 1 while ganesha is in its NFSv4 grace period (see graceWatcher).
	inGrace prometheus.Gauge
	starts  prometheus.Counter
	// exits counts ganesha exits by reason: stopped (asked to), failed (on its own), killed (the
	// gate closed or it ignored SIGTERM).
	exits *prometheus.CounterVec
	// probes times RPC NULL calls by result: ok or error.
	probes *prometheus.HistogramVec
}

// newMetrics registers the agent's metrics, the export and ganesha collector reading
// ganeshaPID among them, on a registry of the agent's own.
func newMetrics(o Options, ganeshaPID func() int64) *metrics {
	const ns, sub = "sharewarden", "nfsserver"
	reg := report.NewRegistry()
	m := &metrics{
		registry: reg,
		volume: prometheus.WrapRegistererWith(prometheus.Labels{
			swv1.MetricLabelVolume: o.VolumeID, swv1.MetricLabelClaimNamespace: o.ClaimNamespace, swv1.MetricLabelClaimName: o.ClaimName,
		}, reg),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_running",
			Help: "1 while the ganesha process is alive.",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_up",
			Help: "1 while ganesha answered the last RPC NULL call on its NFS port.",
		}),
		inGrace: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ganesha_in_grace",
			Help: "1 while ganesha is in its NFSv4 grace period (only reclaims are served, no new opens or locks).",
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
	for _, result := range []string{"ok", "error"} {
		m.probes.WithLabelValues(result)
	}
	_, port, _ := splitIPPort(o.NFSAddress)
	m.running = report.Register(m.volume, m.running)
	m.up = report.Register(m.volume, m.up)
	m.inGrace = report.Register(m.volume, m.inGrace)
	m.starts = report.Register(m.volume, m.starts)
	m.exits = report.Register(m.volume, m.exits)
	m.probes = report.Register(m.volume, m.probes)
	report.Register(m.volume, newVolumeCollector(o.DataDir(), uint16(port), ganeshaPID))
	return m
}

const (
	exitStopped = "stopped"
	exitFailed  = "failed"
	exitKilled  = "killed"
)
