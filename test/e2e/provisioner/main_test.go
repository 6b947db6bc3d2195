// Package provisioner_test runs the controller against the real control plane from test/cluster:
// RWX claims become backing claims bound to local PVs through the real scheduler and PV
// controller, server pods run on kwok nodes, and the claims bind to NFS PVs.
package provisioner_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

var plane *cluster.Cluster

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	if testing.Short() {
		fmt.Println("skipping e2e in -short mode")
		return 0
	}
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		return cluster.SkipE2E("provisioner", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var err error
	plane, err = cluster.Start(ctx, cluster.Config{BinDir: binDir, Nodes: cluster.ThreeNodesTwoZones()})
	if err != nil {
		fmt.Println("starting control plane:", err)
		return 1
	}
	defer plane.Stop()
	if err := fixture.InstallCRDs(ctx, plane); err != nil {
		fmt.Println("installing CRDs:", err)
		return 1
	}
	if err := fixture.SetupStorage(ctx, plane, fixture.Storage{}); err != nil {
		fmt.Println("setting up storage:", err)
		return 1
	}
	return m.Run()
}
