// Package safety_test makes the operator mistakes and crashes that must never lose data or
// break clients, on the real control plane with real NFS servers: each object a live volume
// owns or depends on is deleted in turn while a real NFS client writes through the volume's
// Service address, and the controller is stopped between every pair of provisioning steps.
package safety_test

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
)

var (
	plane  *cluster.Cluster
	binary string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	if testing.Short() {
		fmt.Println("skipping e2e in -short mode")
		return 0
	}
	skip := func(why string) int { return cluster.SkipE2E("safety", errors.New(why)) }
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		return skip(err.Error())
	}
	for _, tool := range []string{"ganesha.nfsd", "nfs-cp", "nfs-ls"} {
		if _, err := exec.LookPath(tool); err != nil {
			return skip(tool + " not installed (hack/install-nfs.sh)")
		}
	}
	if os.Geteuid() != 0 {
		return skip("nfs-ganesha needs root")
	}
	dir, err := os.MkdirTemp("", "sharewarden-safety-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = cluster.BuildSharewarden(dir); err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
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
	if err := fixture.SetupStorage(ctx, plane, fixture.Storage{Network: true, PVsPerNode: 4}); err != nil {
		fmt.Println("setting up storage:", err)
		return 1
	}
	return m.Run()
}
