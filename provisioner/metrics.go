package provisioner

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
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
	m.steps = register(reg, m.steps)
	m.problems = register(reg, m.problems)
	m.ipConflicts = register(reg, m.ipConflicts)
	m.timeToReady = register(reg, m.timeToReady)
	m.readyTotal = register(reg, m.readyTotal)
	m.failover = register(reg, m.failover)
	return m
}

// register adds c to reg, or reuses the collector already there (a second controller in the
// same process, as in tests, shares controller-runtime's registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
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
