package provisioner

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// Phases lists every SharedVolume phase, the values of sharewarden_volume_phase's phase label.
var Phases = []swv1.Phase{swv1.PhasePending, swv1.PhaseProvisioning, swv1.PhaseReady, swv1.PhaseFailingOver,
	swv1.PhaseFenced, swv1.PhaseDeleting, swv1.PhaseFailed}

// VolumeCollector exports every SharedVolume's status when Prometheus scrapes, read from the
// manager's cache (a list in memory, no API call): its phase, where its server runs, its
// consumers, failovers and fenced nodes. Only the leader exports them, so that a second
// replica does not double every series.
type VolumeCollector struct {
	*report.LeaderCollector
	reader client.Reader

	info, phase, consumers, failovers, fencedNodes *prometheus.Desc
}

// NewVolumeCollector returns a collector over reader's SharedVolumes, exporting them once
// elected is closed (ctrl.Manager.Elected); register it with report.Register.
func NewVolumeCollector(reader client.Reader, elected <-chan struct{}) *VolumeCollector {
	labels := []string{swv1.MetricLabelVolume, swv1.MetricLabelClaimNamespace, swv1.MetricLabelClaimName}
	c := &VolumeCollector{
		reader: reader,
		info: prometheus.NewDesc("sharewarden_volume_info",
			"Where a volume is served: its server's node and pod, the Service IP clients mount, and the backing storage class; always 1.",
			append(labels, "server_node", "server_pod", "service_ip", "backing_storage_class"), nil),
		phase: prometheus.NewDesc("sharewarden_volume_phase",
			"1 for the SharedVolume's current phase (Pending, Provisioning, Ready, FailingOver, Fenced, Deleting, Failed), 0 for the others.",
			append(labels, "phase"), nil),
		consumers: prometheus.NewDesc("sharewarden_volume_consumers",
			"Running pods that mount the volume's claim (status.consumerCount).", labels, nil),
		failovers: prometheus.NewDesc("sharewarden_volume_failovers_total",
			"Failovers of the volume, completed and running (status.failoverCount).", labels, nil),
		fencedNodes: prometheus.NewDesc("sharewarden_volume_fenced_nodes",
			"Nodes the volume's servers were fenced off that are not unfenced yet (status.fencedNodes).", labels, nil),
	}
	c.LeaderCollector = report.NewLeaderCollector(elected, prometheus.CounterOpts{
		Name: "sharewarden_volume_collect_errors_total",
		Help: "Scrapes whose SharedVolumes could not be listed from the cache; the sharewarden_volume_* series are missing from them.",
	}, c.collect, c.info, c.phase, c.consumers, c.failovers, c.fencedNodes)
	return c
}

func (c *VolumeCollector) collect(ctx context.Context, emit func(prometheus.Metric)) error {
	list := &swv1.SharedVolumeList{}
	if err := c.reader.List(ctx, list); err != nil {
		return fmt.Errorf("listing SharedVolumes: %w", err)
	}
	for i := range list.Items {
		for _, m := range c.metricsOf(&list.Items[i]) {
			emit(m)
		}
	}
	return nil
}

// metricsOf are one SharedVolume's series.
func (c *VolumeCollector) metricsOf(sv *swv1.SharedVolume) []prometheus.Metric {
	st := sv.Status
	ids := []string{sv.Spec.ClaimUID, sv.Namespace, sv.Spec.ClaimName}
	pod := ""
	if st.Server.Pod != nil {
		pod = st.Server.Pod.Name
	}
	with := func(extra ...string) []string { return append(append([]string{}, ids...), extra...) }
	out := []prometheus.Metric{
		prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, with(st.Server.NodeName, pod, st.ServiceIP, sv.Spec.BackingStorageClass)...),
		prometheus.MustNewConstMetric(c.consumers, prometheus.GaugeValue, float64(st.ConsumerCount), ids...),
		prometheus.MustNewConstMetric(c.failovers, prometheus.CounterValue, float64(st.FailoverCount), ids...),
		prometheus.MustNewConstMetric(c.fencedNodes, prometheus.GaugeValue, float64(len(st.FencedNodes)), ids...),
	}
	phase := st.Phase
	if phase == "" {
		phase = swv1.PhasePending
	}
	for _, p := range Phases {
		v := 0.0
		if p == phase {
			v = 1
		}
		out = append(out, prometheus.MustNewConstMetric(c.phase, prometheus.GaugeValue, v, with(string(p))...))
	}
	return out
}
