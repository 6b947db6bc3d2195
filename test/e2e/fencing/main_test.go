// Package fencing_test fails real nodes under a real control plane while real NFS servers
// (the agent + nfs-ganesha) serve a volume, and checks that at most one server serves at any
// instant, that no acknowledged write is lost, and that the volume comes back elsewhere.
package fencing_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
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
	skip := func(why string) int { return cluster.SkipE2E("fencing", errors.New(why)) }
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		return skip(err.Error())
	}
	for _, tool := range []string{"ganesha.nfsd", "losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			return skip(tool + " not installed (hack/install-nfs.sh)")
		}
	}
	if os.Geteuid() != 0 {
		return skip("nfs-ganesha needs root")
	}
	dir, err := os.MkdirTemp("", "sharewarden-fencing-")
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
	if err := fixture.SetupStorage(ctx, plane, fixture.Storage{Network: true, PVsPerNode: 2}); err != nil {
		fmt.Println("setting up storage:", err)
		return 1
	}
	return m.Run()
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
