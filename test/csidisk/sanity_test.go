package csidisk

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
)

// needsDisks skips a test that mounts loop devices where it cannot.
func needsDisks(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the driver attaches loop devices and mounts them")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck", "resize2fs", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// serve serves services on a socket in a temporary directory until the test ends.
func serve(t *testing.T, services ...Service) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	l, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, services...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return sock
}

// TestSanity runs the kubernetes-csi sanity suite against a controller and a node service on
// one socket. It stages and publishes a few dozen small disks, in about 6 s.
func TestSanity(t *testing.T) {
	needsDisks(t)
	dir := t.TempDir()
	ctrl, err := NewController(Config{Dir: filepath.Join(dir, "disks")})
	if err != nil {
		t.Fatal(err)
	}
	node, err := NewNode(Config{Dir: filepath.Join(dir, "disks"), NodeID: "node-a", MaxVolumes: 3})
	if err != nil {
		t.Fatal(err)
	}
	sock := serve(t, ctrl, node)

	cfg := sanity.NewTestConfig()
	cfg.Address = "unix://" + sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 32 << 20
	cfg.TestVolumeExpandSize = 64 << 20
	cfg.TestNodeVolumeAttachLimit = true
	sanity.Test(t, cfg)
}
