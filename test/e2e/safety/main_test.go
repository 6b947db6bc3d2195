// Package safety_test makes the operator mistakes and crashes that must never lose data or
// break clients, on the real control plane with real NFS servers: each object a live volume
// owns or depends on is deleted in turn while a real NFS client writes through the volume's
// Service address, and the controller is stopped between every pair of provisioning steps.
package safety_test

import (
	"context"
	"testing"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

var (
	plane  *cluster.Cluster
	binary string
)

func TestMain(m *testing.M) {
	fixture.RunSuite(m, fixture.Suite{
		Name:    "safety",
		Tools:   []string{"ganesha.nfsd", "nfs-cp", "nfs-ls"},
		Root:    true,
		Build:   true,
		Plane:   &cluster.Config{Nodes: cluster.ThreeNodesTwoZones()},
		Storage: &fixture.Storage{Network: true, PVsPerNode: 4},
		Setup: func(_ context.Context, e *fixture.Env) error {
			plane, binary = e.Plane, e.Binary
			return nil
		},
	})
}
