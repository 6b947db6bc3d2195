package csidisk

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/sharewarden/sharewarden/test/loopdisk"
)

// cloud is a controller and two node services over one directory, called in-process.
type cloud struct {
	dir  string
	ctrl *Controller
	a, b *Node
}

func newCloud(t *testing.T, dir string) *cloud {
	t.Helper()
	ctrl, err := NewController(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewNode(Config{Dir: dir, NodeID: "node-a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewNode(Config{Dir: dir, NodeID: "node-b"})
	if err != nil {
		t.Fatal(err)
	}
	return &cloud{dir: dir, ctrl: ctrl, a: a, b: b}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// mountOn stages and publishes id on n under root, and returns the target.
func mountOn(t *testing.T, n *Node, id, root string) string {
	t.Helper()
	ctx := context.Background()
	staging, tgt := filepath.Join(root, "staging"), filepath.Join(root, "target")
	if err := os.MkdirAll(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	must[*csi.NodeStageVolumeResponse](t)(n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: rwo}))
	must[*csi.NodePublishVolumeResponse](t)(n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: tgt, VolumeCapability: rwo}))
	return tgt
}

func unmountOn(t *testing.T, n *Node, id, root string) {
	t.Helper()
	ctx := context.Background()
	must[*csi.NodeUnpublishVolumeResponse](t)(n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: filepath.Join(root, "target")}))
	must[*csi.NodeUnstageVolumeResponse](t)(n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(root, "staging")}))
}

func attach(t *testing.T, c *Controller, id, node string) {
	t.Helper()
	must[*csi.ControllerPublishVolumeResponse](t)(c.ControllerPublishVolume(context.Background(),
		&csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: rwo}))
}

func detach(t *testing.T, c *Controller, id, node string) {
	t.Helper()
	must[*csi.ControllerUnpublishVolumeResponse](t)(c.ControllerUnpublishVolume(context.Background(),
		&csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: node}))
}

func fsSize(t *testing.T, dir string) int64 {
	t.Helper()
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	return int64(sfs.Blocks) * sfs.Bsize
}

// releaseAll unmounts whatever a failed test left mounted under dir and detaches the loop
// devices of its images.
func releaseAll(t *testing.T, dir string) {
	ctx := context.Background()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	var mounts []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for _, m := range slices.Backward(mounts) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", m, err)
		}
	}
	images, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*.img"))
	for _, img := range images {
		devs, _ := loopdisk.Attached(ctx, img)
		for _, d := range devs {
			if err := (&loopdisk.Disk{Device: d}).Detach(ctx); err != nil {
				t.Error(err)
			}
		}
	}
}

// TestDiskMoves walks a disk through what ShareWarden's backing claims go through: attached to
// one node at a time, mounted on a new loop device on each node, snapshotted and cloned while
// mounted, restored larger, and carried across a restart of the driver.
func TestDiskMoves(t *testing.T) {
	needsDisks(t)
	ctx := context.Background()
	dir := t.TempDir()
	c := newCloud(t, filepath.Join(dir, "cloud"))
	vol := must[*csi.CreateVolumeResponse](t)(c.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-1",
		VolumeCapabilities: []*csi.VolumeCapability{rwo}, CapacityRange: &csi.CapacityRange{RequiredBytes: 32 * mib}})).GetVolume()
	id := vol.GetVolumeId()
	rootA, rootB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	t.Cleanup(func() { releaseAll(t, dir) })

	// Not attached anywhere yet: no node may mount it.
	_, err := c.a.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(rootA, "staging"), VolumeCapability: rwo})
	wantCode(t, err, codes.FailedPrecondition, "not attached to node node-a")

	attach(t, c.ctrl, id, "node-a")
	_, err = c.ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node-b", VolumeCapability: rwo})
	wantCode(t, err, codes.FailedPrecondition, "attached to node node-a")
	_, err = c.ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node-z", VolumeCapability: rwo})
	wantCode(t, err, codes.NotFound, "node node-z is unknown")

	tgtA := mountOn(t, c.a, id, rootA)
	devA := loopdisk.MountDevice(filepath.Join(rootA, "staging"))
	if devA == "" || loopdisk.MountDevice(tgtA) != devA {
		t.Fatalf("staging on %q, target on %q: want one loop device", devA, loopdisk.MountDevice(tgtA))
	}
	data := bytes.Repeat([]byte("sharewarden"), 1000)
	if err := os.WriteFile(filepath.Join(tgtA, "file"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.FailedPrecondition, "attached to node node-a")

	// A snapshot and a clone of the mounted disk hold what was written (the copy froze it).
	snap := must[*csi.CreateSnapshotResponse](t)(c.ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: id})).GetSnapshot()
	if !snap.GetReadyToUse() || snap.GetSizeBytes() != 32*mib {
		t.Fatalf("snapshot %v: want ready, 32 MiB", snap)
	}
	restored := must[*csi.CreateVolumeResponse](t)(c.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-restored",
		VolumeCapabilities: []*csi.VolumeCapability{rwo}, CapacityRange: &csi.CapacityRange{RequiredBytes: 64 * mib},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.GetSnapshotId()}}}})).GetVolume()
	clone := must[*csi.CreateVolumeResponse](t)(c.ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-clone",
		VolumeCapabilities: []*csi.VolumeCapability{rwo},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: id}}}})).GetVolume()
	if clone.GetCapacityBytes() != 32*mib {
		t.Fatalf("clone of %d bytes, want its source's 32 MiB", clone.GetCapacityBytes())
	}
	for _, v := range []*csi.Volume{restored, clone} {
		root := filepath.Join(dir, v.GetVolumeId())
		attach(t, c.ctrl, v.GetVolumeId(), "node-b")
		tgt := mountOn(t, c.b, v.GetVolumeId(), root)
		if got, err := os.ReadFile(filepath.Join(tgt, "file")); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("volume %s: file %d bytes (%v), want what was written", v.GetVolumeId(), len(got), err)
		}
		if got := fsSize(t, tgt); got < v.GetCapacityBytes()*3/4 { // ext4 keeps some for itself
			t.Fatalf("volume %s: filesystem of %d bytes on a %d-byte disk: not grown", v.GetVolumeId(), got, v.GetCapacityBytes())
		}
		unmountOn(t, c.b, v.GetVolumeId(), root)
		detach(t, c.ctrl, v.GetVolumeId(), "node-b")
	}

	// A restarted driver finds its attachments and mounts: staging again is a no-op.
	c = newCloud(t, filepath.Join(dir, "cloud"))
	if mountOn(t, c.a, id, rootA) != tgtA || loopdisk.MountDevice(tgtA) != devA {
		t.Fatal("a restarted node did not find its mount")
	}

	// Force-detached while node A still has it mounted (a dead node): B may attach it but not
	// mount it until A let go, and then gets another loop device.
	detach(t, c.ctrl, id, "node-a")
	attach(t, c.ctrl, id, "node-b")
	_, err = c.b.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(rootB, "staging"), VolumeCapability: rwo})
	wantCode(t, err, codes.FailedPrecondition, "still mounted on node node-a")
	_, err = c.a.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: filepath.Join(rootA, "staging")})
	wantCode(t, err, codes.FailedPrecondition, "still published")
	unmountOn(t, c.a, id, rootA)
	if _, err := os.Stat(tgtA); !os.IsNotExist(err) {
		t.Fatalf("target %s left behind: %v", tgtA, err)
	}
	tgtB := mountOn(t, c.b, id, rootB)
	if devB := loopdisk.MountDevice(tgtB); devB == "" || devB == devA {
		t.Fatalf("on node-b the disk is on %q, on node-a it was on %q: want another device", devB, devA)
	}
	if got, err := os.ReadFile(filepath.Join(tgtB, "file")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("moved disk: file %d bytes (%v), want what was written", len(got), err)
	}

	// Expanded while mounted: the image grows at once, the filesystem on the node.
	exp := must[*csi.ControllerExpandVolumeResponse](t)(c.ctrl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{
		VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 48 * mib}}))
	if exp.GetCapacityBytes() != 48*mib || !exp.GetNodeExpansionRequired() {
		t.Fatalf("expand: %v, want 48 MiB and node expansion", exp)
	}
	_, err = c.b.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: tgtB})
	if err == nil {
		if got := fsSize(t, tgtB); got < 36*mib { // 32 MiB grown to 48, less what ext4 keeps
			t.Fatalf("filesystem of %d bytes after NodeExpandVolume, want about 48 MiB", got)
		}
	} else {
		// Without CAP_SYS_RESOURCE the kernel refuses an online resize; the disk grows when
		// next staged.
		wantCode(t, err, codes.FailedPrecondition, "CAP_SYS_RESOURCE")
		unmountOn(t, c.b, id, rootB)
		tgtB = mountOn(t, c.b, id, rootB)
		if got := fsSize(t, tgtB); got < 36*mib { // 32 MiB grown to 48, less what ext4 keeps
			t.Fatalf("filesystem of %d bytes after staging again, want about 48 MiB", got)
		}
	}

	unmountOn(t, c.b, id, rootB)
	detach(t, c.ctrl, id, "node-b")
	if devs, err := loopdisk.Attached(ctx, filepath.Join(dir, "cloud", "volumes", id+".img")); err != nil || len(devs) > 0 {
		t.Fatalf("loop devices left on the image: %v (%v)", devs, err)
	}
	for _, v := range []string{id, restored.GetVolumeId(), clone.GetVolumeId()} {
		must[*csi.DeleteVolumeResponse](t)(c.ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v}))
	}
	must[*csi.DeleteSnapshotResponse](t)(c.ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()}))
	left, err := filepath.Glob(filepath.Join(dir, "cloud", "*", "*.img"))
	if err != nil || len(left) > 0 {
		t.Fatalf("images left: %v (%v)", left, err)
	}
}
