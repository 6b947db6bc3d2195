package fencing

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// NodeCollector exports the nodes fenced as a whole (labelled swv1.LabelNodeFenced) when
// Prometheus scrapes, read from the manager's cache; only the leader exports them.
type NodeCollector struct {
	reader client.Reader
	// elected is closed once this replica leads (ctrl.Manager.Elected).
	elected <-chan struct{}
	fenced  *prometheus.Desc
	errors  prometheus.Counter
}

// NewNodeCollector returns a collector over reader's nodes; register it with report.Register.
func NewNodeCollector(reader client.Reader, elected <-chan struct{}) *NodeCollector {
	return &NodeCollector{
		reader: reader, elected: elected,
		fenced: prometheus.NewDesc("sharewarden_node_fenced",
			"1 for each node fenced as a whole (labelled "+swv1.LabelNodeFenced+"=true): no ShareWarden server or consumer is placed there until it has been Ready for the settle period.",
			[]string{"node"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharewarden_node_collect_errors_total",
			Help: "Scrapes whose nodes could not be listed from the cache; sharewarden_node_fenced is missing from them.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *NodeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.fenced
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *NodeCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	select {
	case <-c.elected:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nodes := &corev1.NodeList{}
	if err := c.reader.List(ctx, nodes, client.MatchingLabels{swv1.LabelNodeFenced: swv1.FencedTrue}); err != nil {
		c.errors.Inc()
		return
	}
	for _, n := range nodes.Items {
		ch <- prometheus.MustNewConstMetric(c.fenced, prometheus.GaugeValue, 1, n.Name)
	}
}
