package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/test/cluster"
)

// BenchmarkStart measures a warm start (binaries built) of the whole plane with three kwok nodes
// Ready, and its Stop. Figures go to BENCHMARKS.md.
func BenchmarkStart(b *testing.B) {
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		b.Skipf("skipping: %v", err)
	}
	var startTotal, stopTotal time.Duration
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		t0 := time.Now()
		c, err := cluster.Start(ctx, cluster.Config{BinDir: binDir, Nodes: cluster.ThreeNodesTwoZones()})
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := c.Stop(); err != nil {
			b.Fatal(err)
		}
		startTotal += t1.Sub(t0)
		stopTotal += time.Since(t1)
		cancel()
	}
	b.ReportMetric(startTotal.Seconds()/float64(b.N), "s/start")
	b.ReportMetric(stopTotal.Seconds()/float64(b.N), "s/stop")
}
