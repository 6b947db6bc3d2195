// Package provisioner_test runs the controller against the real control plane from test/cluster:
// RWX claims become backing claims bound to local PVs through the real scheduler and PV
// controller, server pods run on kwok nodes, and the claims bind to NFS PVs.
package provisioner_test

import (
	"context"
	"testing"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

var plane *cluster.Cluster

func TestMain(m *testing.M) {
	fixture.RunSuite(m, fixture.Suite{
		Name:    "provisioner",
		Plane:   &cluster.Config{Nodes: cluster.ThreeNodesTwoZones()},
		Storage: &fixture.Storage{},
		Setup:   func(_ context.Context, e *fixture.Env) error { plane = e.Plane; return nil },
	})
}
