package provisioner

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// Metrics are the provisioner's own Prometheus metrics (controller-runtime adds reconcile
// counts, latencies and work-queue depth on the same registry).
type Metrics struct {
	timeToReady prometheus.Histogram
	readyTotal  prometheus.Counter
	failover    prometheus.Histogram
	steps       *prometheus.CounterVec
	problems    *prometheus.CounterVec
	ipConflicts prometheus.Counter
}

// NewMetrics registers the provisioner's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		timeToReady: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sharewarden_volume_time_to_ready_seconds",
			Help:    "Time from a claim's SharedVolume creation to its first Ready.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 12),
		}),
		failover: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sharewarden_failover_duration_seconds",
			Help:    "Time from a server's lease seen expired to its replacement Ready.",
			Buckets: prometheus.LinearBuckets(2, 2, 15),
		}),
		readyTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharewarden_volumes_ready_total",
			Help: "Volumes that reached Ready (first time or after a failover).",
		}),
	}
	m.steps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sharewarden_provisioning_steps_total",
		Help: "Writes of the provisioning and release path, by step (SharedVolumeCreated, BackingClaimCreated, ServiceCreated, ServerPodCreated, PVCreated, ReleaseStarted, ServerDeleted, Released).",
	}, []string{"step"})
	m.problems = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sharewarden_volume_problems_total",
		Help: "Warning Events about volumes, by reason (e.g. ManagedClassMissing, ServiceIPTaken, DeletionHeld).",
	}, []string{"reason"})
	m.ipConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sharewarden_service_ip_conflicts_total",
		Help: "Times a volume's Service could not be kept at the ClusterIP its PV names (address taken, or a Service found elsewhere).",
	})
	m.steps = report.Register(reg, m.steps)
	m.problems = report.Register(reg, m.problems)
	m.ipConflicts = report.Register(reg, m.ipConflicts)
	m.timeToReady = report.Register(reg, m.timeToReady)
	m.readyTotal = report.Register(reg, m.readyTotal)
	m.failover = report.Register(reg, m.failover)
	return m
}

func (m *Metrics) observeReady(sv *swv1.SharedVolume, st swv1.SharedVolumeStatus, now time.Time) {
	if m == nil {
		return
	}
	m.readyTotal.Inc()
	switch {
	case st.FailoverCount == 0:
		m.timeToReady.Observe(now.Sub(sv.CreationTimestamp.Time).Seconds())
	case st.LastFailover != nil && st.LastFailover.Duration != nil:
		m.failover.Observe(st.LastFailover.Duration.Seconds())
	}
}

func (m *Metrics) observeStep(s Step) {
	if m != nil {
		m.steps.WithLabelValues(string(s)).Inc()
	}
}

func (m *Metrics) problem(reason string) {
	if m != nil {
		m.problems.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) serviceIPConflict() {
	if m != nil {
		m.ipConflicts.Inc()
	}
}
