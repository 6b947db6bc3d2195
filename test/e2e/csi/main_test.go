// Package csi_test takes RWX claims through ShareWarden's CSI driver on the real control plane:
// external-provisioner, -resizer and csi-snapshotter call the controller's CSI service, the
// backing claims are disks of test/csidisk behind the same sidecars plus external-attacher
// (real VolumeAttachments), real nfs-ganesha servers serve them, and files are written and read
// over NFS: snapshot, restore, clone, expansion, and a snapshot that cannot be taken. And
// csi-sanity runs against the controller's CSI service (sanity_test.go).
package csi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

var (
	plane  *cluster.Cluster
	csiEnv *fixture.CSI
	runner *serverrunner.Runner
)

func TestMain(m *testing.M) {
	// Six nodes, so that nodes fenced and not yet settled never run the plane dry while the
	// failover tests kill node after node.
	nodes := append(cluster.ThreeNodesTwoZones(), cluster.NodeSpec{Name: "node-a3", Zone: "zone-a"},
		cluster.NodeSpec{Name: "node-b2", Zone: "zone-b"}, cluster.NodeSpec{Name: "node-b3", Zone: "zone-b"})
	fixture.RunSuite(m, fixture.Suite{
		Name:    "csi",
		Tools:   []string{"ganesha.nfsd", "nfs-cp", "nfs-ls", "losetup", "mkfs.ext4"},
		Root:    true,
		CSI:     true,
		Build:   true,
		Plane:   &cluster.Config{Nodes: nodes},
		Storage: &fixture.Storage{PVsPerNode: 2},
		Setup:   setup,
	})
}

// setup runs the CSI path (csidisk and the sidecars), the controller serving CSI, ShareWarden's
// own sidecars and the kubelet stand-in.
func setup(ctx context.Context, e *fixture.Env) error {
	plane = e.Plane
	var err error
	if csiEnv, err = fixture.SetupCSI(ctx, plane, e.Dir); err != nil {
		return fmt.Errorf("setting up the CSI path: %w", err)
	}
	e.Cleanup(csiEnv.Stop)
	bg := context.Background()
	opts := fixture.ControllerOptions(plane)
	opts.LeaderElect = false
	opts.CSIEndpoint = csiEnv.ControllerEndpoint()
	opts.UnfenceSettle = 30 * time.Second // the plane's node-monitor-grace-period is 20s
	ctl := fixture.StartController(bg, opts)
	e.Cleanup(func() { _ = ctl.Stop() })
	if _, err := csiEnv.StartSharewardenSidecars(ctx); err != nil {
		return fmt.Errorf("starting ShareWarden's sidecars: %w", err)
	}
	runner, err = serverrunner.Start(bg, serverrunner.Config{
		Client: plane.Client(), Binary: e.Binary, Namespace: fixture.SystemNamespace, WorkDir: e.Dir,
		Kubeconfig: plane.Kubeconfig(), CSIDisk: csiEnv.NodeClient,
		// libnfs, the test client, speaks NFSv4.0 only.
		ExtraArgs: []string{"--nfs-minor-versions=0,1,2", "--lease=5s", "--grace=5s"},
		Logf:      func(format string, args ...any) { fmt.Printf("serverrunner: "+format+"\n", args...) },
	})
	if err != nil {
		return fmt.Errorf("starting the kubelet stand-in: %w", err)
	}
	e.Cleanup(runner.Stop)
	return nil
}
