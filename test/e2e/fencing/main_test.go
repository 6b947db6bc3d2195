// Package fencing_test fails real nodes under a real control plane while real NFS servers
// (the agent + nfs-ganesha) serve a volume, and checks that at most one server serves at any
// instant, that no acknowledged write is lost, and that the volume comes back elsewhere.
package fencing_test

import (
	"context"
	"slices"
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
		Name:    "fencing",
		Tools:   []string{"ganesha.nfsd", "losetup", "mkfs.ext4"},
		Root:    true,
		Build:   true,
		Plane:   &cluster.Config{Nodes: cluster.ThreeNodesTwoZones()},
		Storage: &fixture.Storage{Network: true, PVsPerNode: 2},
		Setup: func(_ context.Context, e *fixture.Env) error {
			plane, binary = e.Plane, e.Binary
			return nil
		},
	})
}

// addExtraNodes adds three more nodes (once), so that nodes fenced and not yet settled never
// run the cluster dry when a test kills node after node.
func addExtraNodes(ctx context.Context) error {
	var add []cluster.NodeSpec
	for _, n := range []cluster.NodeSpec{{Name: "node-a3", Zone: "zone-a"}, {Name: "node-b2", Zone: "zone-b"}, {Name: "node-b3", Zone: "zone-b"}} {
		if !slices.Contains(plane.NodeNames(), n.Name) {
			add = append(add, n)
		}
	}
	return plane.AddNodes(ctx, add...)
}
