package fencing

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// NodeCollector exports the nodes fenced as a whole (labelled swv1.LabelNodeFenced) when
// Prometheus scrapes, read from the manager's cache; only the leader exports them.
type NodeCollector struct {
	*report.LeaderCollector
	reader client.Reader
	fenced *prometheus.Desc
}

// NewNodeCollector returns a collector over reader's nodes, exporting them once elected is
// closed (ctrl.Manager.Elected); register it with report.Register.
func NewNodeCollector(reader client.Reader, elected <-chan struct{}) *NodeCollector {
	c := &NodeCollector{
		reader: reader,
		fenced: prometheus.NewDesc("sharewarden_node_fenced",
			"1 for each node fenced as a whole (labelled "+swv1.LabelNodeFenced+"=true): no ShareWarden server or consumer is placed there until it has been Ready for the settle period.",
			[]string{"node"}, nil),
	}
	c.LeaderCollector = report.NewLeaderCollector(elected, prometheus.CounterOpts{
		Name: "sharewarden_node_collect_errors_total",
		Help: "Scrapes whose nodes could not be listed from the cache; sharewarden_node_fenced is missing from them.",
	}, c.collect, c.fenced)
	return c
}

func (c *NodeCollector) collect(ctx context.Context, emit func(prometheus.Metric)) error {
	nodes := &corev1.NodeList{}
	if err := c.reader.List(ctx, nodes, client.MatchingLabels{swv1.LabelNodeFenced: swv1.FencedTrue}); err != nil {
		return fmt.Errorf("listing fenced nodes: %w", err)
	}
	for _, n := range nodes.Items {
		emit(prometheus.MustNewConstMetric(c.fenced, prometheus.GaugeValue, 1, n.Name))
	}
	return nil
}
