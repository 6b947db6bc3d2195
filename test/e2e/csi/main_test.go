// Package csi_test takes RWX claims through ShareWarden's CSI driver on the real control plane:
// external-provisioner, -resizer and csi-snapshotter call the controller's CSI service, the
// backing claims are disks of test/csidisk behind the same sidecars plus external-attacher
// (real VolumeAttachments), real nfs-ganesha servers serve them, and files are written and read
// over NFS: snapshot, restore, clone, expansion, and a snapshot that cannot be taken. And
// csi-sanity runs against the controller's CSI service (sanity_test.go).
package csi_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

var (
	plane  *cluster.Cluster
	csiEnv *fixture.CSI
	runner *serverrunner.Runner
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	if testing.Short() {
		fmt.Println("skipping e2e in -short mode")
		return 0
	}
	skip := func(why string) int { return cluster.SkipE2E("csi", errors.New(why)) }
	binDir := cluster.DefaultBinDir()
	if err := errors.Join(cluster.CheckBinaries(binDir), cluster.CheckCSIBinaries(binDir)); err != nil {
		return skip(err.Error())
	}
	for _, tool := range []string{"ganesha.nfsd", "nfs-cp", "nfs-ls", "losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return skip(tool + " not installed (make deps)")
		}
	}
	if os.Geteuid() != 0 {
		return skip("nfs-ganesha and loop devices need root")
	}
	dir, err := os.MkdirTemp("", "sharewarden-csi-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary, err := cluster.BuildSharewarden(dir)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bg := context.Background()
	// Six nodes, so that nodes fenced and not yet settled never run the plane dry while the
	// failover tests kill node after node.
	nodes := append(cluster.ThreeNodesTwoZones(), cluster.NodeSpec{Name: "node-a3", Zone: "zone-a"},
		cluster.NodeSpec{Name: "node-b2", Zone: "zone-b"}, cluster.NodeSpec{Name: "node-b3", Zone: "zone-b"})
	plane, err = cluster.Start(ctx, cluster.Config{BinDir: binDir, Nodes: nodes})
	if err != nil {
		fmt.Println("starting control plane:", err)
		return 1
	}
	defer plane.Stop()
	if err := fixture.InstallCRDs(ctx, plane); err != nil {
		fmt.Println("installing CRDs:", err)
		return 1
	}
	if err := fixture.SetupStorage(ctx, plane, fixture.Storage{PVsPerNode: 2}); err != nil {
		fmt.Println("setting up storage:", err)
		return 1
	}
	if csiEnv, err = fixture.SetupCSI(ctx, plane, dir); err != nil {
		fmt.Println("setting up the CSI path:", err)
		return 1
	}
	defer csiEnv.Stop()
	opts := fixture.ControllerOptions(plane)
	opts.LeaderElect = false
	opts.CSIEndpoint = csiEnv.ControllerEndpoint()
	opts.UnfenceSettle = 30 * time.Second // the plane's node-monitor-grace-period is 20s
	ctl := fixture.StartController(bg, opts)
	defer func() { _ = ctl.Stop() }()
	if _, err := csiEnv.StartSharewardenSidecars(ctx); err != nil {
		fmt.Println("starting ShareWarden's sidecars:", err)
		return 1
	}
	runner, err = serverrunner.Start(bg, serverrunner.Config{
		Client: plane.Client(), Binary: binary, Namespace: fixture.SystemNamespace, WorkDir: dir,
		Kubeconfig: plane.Kubeconfig(), CSIDisk: csiEnv.NodeClient,
		// libnfs, the test client, speaks NFSv4.0 only.
		ExtraArgs: []string{"--nfs-minor-versions=0,1,2", "--lease=5s", "--grace=5s"},
		Logf:      func(format string, args ...any) { fmt.Printf("serverrunner: "+format+"\n", args...) },
	})
	if err != nil {
		fmt.Println("starting the kubelet stand-in:", err)
		return 1
	}
	defer runner.Stop()
	return m.Run()
}
