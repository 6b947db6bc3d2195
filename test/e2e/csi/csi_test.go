package csi_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// bound creates the claim and waits until external-provisioner bound it to a PV of
// ShareWarden's driver, returning that PV.
func bound(t *testing.T, ctx context.Context, c client.Client, claim *corev1.PersistentVolumeClaim) *corev1.PersistentVolume {
	t.Helper()
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{}
	fixture.WaitFor(t, ctx, 3*time.Minute, "claim "+claim.Name+" bound to a CSI PV", func() error {
		if err := csiEnv.Check(); err != nil {
			return err
		}
		got := &corev1.PersistentVolumeClaim{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), got); err != nil {
			return err
		}
		if got.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("claim is %s", got.Status.Phase)
		}
		return c.Get(ctx, client.ObjectKey{Name: got.Spec.VolumeName}, pv)
	})
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != swv1.CSIDriverName {
		t.Fatalf("PV %s is not of %s: %+v", pv.Name, swv1.CSIDriverName, pv.Spec.PersistentVolumeSource)
	}
	return pv
}

// address is where the test reaches a volume's export: its Service IP, through the kubelet
// stand-in's kube-proxy.
func address(t *testing.T, pv *corev1.PersistentVolume) string {
	t.Helper()
	ip := pv.Spec.CSI.VolumeAttributes[csidriver.ContextServer]
	addr, err := runner.ServiceAddress(ip)
	if err != nil {
		t.Fatalf("service %s: %v", ip, err)
	}
	return addr
}

func nfsURL(addr, path string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf("nfs://%s%s?version=4&nfsport=%s", host, path, port)
}

// writeFiles writes each file over NFS (libnfs) and fails the test on an error.
func writeFiles(t *testing.T, ctx context.Context, addr string, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		fixture.WaitFor(t, ctx, 60*time.Second, "writing "+name+" over NFS", func() error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(cctx, "nfs-cp", src, nfsURL(addr, "/export/"+name)).CombinedOutput(); err != nil {
				return fmt.Errorf("nfs-cp: %w: %s", err, out)
			}
			return nil
		})
	}
}

// readFiles reads each file back over NFS and compares it.
func readFiles(t *testing.T, ctx context.Context, addr string, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, want := range files {
		dst := filepath.Join(dir, name)
		fixture.WaitFor(t, ctx, 60*time.Second, "reading "+name+" over NFS", func() error {
			_ = os.Remove(dst)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(cctx, "nfs-cp", nfsURL(addr, "/export/"+name), dst).CombinedOutput(); err != nil {
				return fmt.Errorf("nfs-cp: %w: %s", err, out)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				return err
			}
			if string(got) != want {
				return fmt.Errorf("%s holds %q, want %q", name, got, want)
			}
			return nil
		})
	}
}

func snapshotOf(ns, name, claim string) *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(claim)},
			VolumeSnapshotClassName: ptr.To(fixture.CSISnapshotClass),
		},
	}
}

// readySnapshot waits until the snapshot is ReadyToUse and returns its content's handle.
func readySnapshot(t *testing.T, ctx context.Context, c client.Client, vs *snapshotv1.VolumeSnapshot) string {
	t.Helper()
	handle := ""
	fixture.WaitFor(t, ctx, 2*time.Minute, "snapshot "+vs.Name+" ReadyToUse", func() error {
		got := &snapshotv1.VolumeSnapshot{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(vs), got); err != nil {
			return err
		}
		if got.Status == nil || !ptr.Deref(got.Status.ReadyToUse, false) || got.Status.BoundVolumeSnapshotContentName == nil {
			return fmt.Errorf("status %+v", got.Status)
		}
		content := &snapshotv1.VolumeSnapshotContent{}
		if err := c.Get(ctx, client.ObjectKey{Name: *got.Status.BoundVolumeSnapshotContentName}, content); err != nil {
			return err
		}
		if content.Spec.Driver != swv1.CSIDriverName || content.Status == nil || content.Status.SnapshotHandle == nil {
			return fmt.Errorf("content %s: driver %s, status %+v", content.Name, content.Spec.Driver, content.Status)
		}
		handle = *content.Status.SnapshotHandle
		return nil
	})
	return handle
}

// Files written over NFS survive a snapshot of the RWX claim, a restore into a new RWX claim
// and a clone of the claim; the snapshot is a snapshot of the backing disk, and deleting the
// snapshot deletes that.
func TestSnapshotRestoreClone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := fixture.Namespace(t, ctx, plane, "snapshots")

	src := fixture.Claim(ns, "data", fixture.OnClass(fixture.CSIManagedClass), fixture.Size("64Mi"))
	pv := bound(t, ctx, c, src)
	files := map[string]string{"a.txt": "alpha", "b.txt": "written before the snapshot"}
	writeFiles(t, ctx, address(t, pv), files)

	vs := snapshotOf(ns, "data-snap", "data")
	if err := c.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}
	handle := readySnapshot(t, ctx, c, vs)
	backing := &snapshotv1.VolumeSnapshot{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: handle}, backing); err != nil {
		t.Fatalf("backing snapshot %s: %v", handle, err)
	}
	if !provisioner.IsBackingSnapshot(backing) || ptr.Deref(backing.Spec.Source.PersistentVolumeClaimName, "") != swv1.ObjectName(string(pvClaimUID(t, ctx, c, src))) ||
		ptr.Deref(backing.Spec.VolumeSnapshotClassName, "") != fixture.DiskSnapshotClass {
		t.Errorf("backing snapshot %s: labels %v, source %v, class %v", handle, backing.Labels, backing.Spec.Source.PersistentVolumeClaimName, backing.Spec.VolumeSnapshotClassName)
	}
	// Written after the snapshot: in the clone, not in the restore.
	writeFiles(t, ctx, address(t, pv), map[string]string{"c.txt": "after"})

	restored := bound(t, ctx, c, fixture.Claim(ns, "restored", fixture.OnClass(fixture.CSIManagedClass), fixture.Size("64Mi"), func(p *corev1.PersistentVolumeClaim) {
		p.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: ptr.To(snapshotv1.GroupName), Kind: "VolumeSnapshot", Name: vs.Name}
	}))
	readFiles(t, ctx, address(t, restored), files)
	missing(t, ctx, address(t, restored), "c.txt")

	clone := bound(t, ctx, c, fixture.Claim(ns, "clone", fixture.OnClass(fixture.CSIManagedClass), fixture.Size("64Mi"), func(p *corev1.PersistentVolumeClaim) {
		p.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "data"}
	}))
	readFiles(t, ctx, address(t, clone), map[string]string{"a.txt": "alpha", "b.txt": files["b.txt"], "c.txt": "after"})

	// The backing claims were attached where their servers run: real VolumeAttachments.
	vas := &storagev1.VolumeAttachmentList{}
	if err := c.List(ctx, vas); err != nil {
		t.Fatal(err)
	}
	attached := 0
	for _, va := range vas.Items {
		if va.Status.Attached {
			attached++
		}
	}
	if attached < 3 {
		t.Errorf("%d attached VolumeAttachments, want one per backing disk (3)", attached)
	}

	if err := c.Delete(ctx, vs); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 2*time.Minute, "backing snapshot deleted with the snapshot", func() error {
		err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: handle}, &snapshotv1.VolumeSnapshot{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("backing snapshot still there (err %v)", err)
	})
}

func pvClaimUID(t *testing.T, ctx context.Context, c client.Client, claim *corev1.PersistentVolumeClaim) string {
	t.Helper()
	got := &corev1.PersistentVolumeClaim{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(claim), got); err != nil {
		t.Fatal(err)
	}
	return string(got.UID)
}

func missing(t *testing.T, ctx context.Context, addr, name string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "nfs-ls", nfsURL(addr, "/export")).CombinedOutput()
	if err != nil {
		t.Fatalf("nfs-ls: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == name {
			t.Errorf("%s is in the export, want it absent:\n%s", name, out)
		}
	}
}

// Growing the RWX claim grows the backing disk through the CSI resizers of both drivers, and
// the claim reports the new size.
func TestExpand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := fixture.Namespace(t, ctx, plane, "expand")
	claim := fixture.Claim(ns, "grow", fixture.OnClass(fixture.CSIManagedClass), fixture.Size("64Mi"))
	pv := bound(t, ctx, c, claim)
	writeFiles(t, ctx, address(t, pv), map[string]string{"kept.txt": "kept"})

	got := &corev1.PersistentVolumeClaim{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(claim), got); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(got.DeepCopy())
	got.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("128Mi")
	if err := c.Patch(ctx, got, patch); err != nil {
		t.Fatal(err)
	}
	want := resource.MustParse("128Mi")
	fixture.WaitFor(t, ctx, 3*time.Minute, "claim, PV and backing claim at 128Mi", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), got); err != nil {
			return err
		}
		backing := &corev1.PersistentVolumeClaim{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(string(got.UID))}, backing); err != nil {
			return err
		}
		pvNow := &corev1.PersistentVolume{}
		if err := c.Get(ctx, client.ObjectKey{Name: pv.Name}, pvNow); err != nil {
			return err
		}
		for what, q := range map[string]resource.Quantity{
			"claim": got.Status.Capacity[corev1.ResourceStorage], "backing claim": backing.Status.Capacity[corev1.ResourceStorage],
			"PV": pvNow.Spec.Capacity[corev1.ResourceStorage],
		} {
			if q.Cmp(want) < 0 {
				return fmt.Errorf("%s is %s", what, q.String())
			}
		}
		return nil
	})
	readFiles(t, ctx, address(t, pv), map[string]string{"kept.txt": "kept"})
}

// A snapshot of a volume whose backing class's driver has no VolumeSnapshotClass fails with a
// Warning Event on the claim that says what to create, and the VolumeSnapshot never turns ready.
func TestSnapshotWithoutSnapshotClass(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := fixture.Namespace(t, ctx, plane, "nosnap")
	// A CSI managed class backed by the plane's local disks (no provisioner, no snapshots).
	class := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "sharewarden-csi-local"},
		Provisioner:       swv1.CSIDriverName,
		Parameters:        map[string]string{swv1.ParameterBackingStorageClass: fixture.BackingClass},
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := c.Create(ctx, class); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	bound(t, ctx, c, fixture.Claim(ns, "local", fixture.OnClass(class.Name), fixture.Size("1Gi")))
	vs := snapshotOf(ns, "local-snap", "local")
	if err := c.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 2*time.Minute, "a CannotSnapshot Warning on the claim", func() error {
		evs := &corev1.EventList{}
		if err := c.List(ctx, evs, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == provisioner.ReasonCannotSnapshot && e.Type == corev1.EventTypeWarning && e.InvolvedObject.Name == "local" &&
				strings.Contains(e.Message, "no default VolumeSnapshotClass") && strings.Contains(e.Message, swv1.ParameterSnapshotClass) {
				return nil
			}
		}
		return fmt.Errorf("no such event among %d", len(evs.Items))
	})
	got := &snapshotv1.VolumeSnapshot{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(vs), got); err != nil {
		t.Fatal(err)
	}
	if got.Status != nil && ptr.Deref(got.Status.ReadyToUse, false) {
		t.Errorf("snapshot ready although it cannot be taken: %+v", got.Status)
	}
}

// killServerNode kills the node of the volume's server (its kubelet and its network) and waits
// until a replacement serves on another node with the backing disk attached there alone.
func killServerNode(t *testing.T, ctx context.Context, c client.Client, podKey client.ObjectKey, backingPV string) (dead, moved string) {
	t.Helper()
	old := &corev1.Pod{}
	if err := c.Get(ctx, podKey, old); err != nil {
		t.Fatal(err)
	}
	dead = old.Spec.NodeName
	runner.PartitionNode(dead)
	if err := plane.FailNode(dead); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 3*time.Minute, "the replacement server running elsewhere with the disk attached there", func() error {
		p := &corev1.Pod{}
		if err := c.Get(ctx, podKey, p); err != nil {
			return err
		}
		if p.UID == old.UID || p.Spec.NodeName == "" {
			return fmt.Errorf("no replacement yet")
		}
		if p.Spec.NodeName == dead {
			return fmt.Errorf("replacement on the dead node %s", dead)
		}
		if _, ok := runner.EndpointByUID(p.UID); !ok {
			return fmt.Errorf("replacement on %s not serving yet", p.Spec.NodeName)
		}
		vas := &storagev1.VolumeAttachmentList{}
		if err := c.List(ctx, vas); err != nil {
			return err
		}
		for _, va := range vas.Items {
			if ptr.Deref(va.Spec.Source.PersistentVolumeName, "") != backingPV {
				continue
			}
			if va.Spec.NodeName == dead {
				return fmt.Errorf("the disk is still attached to the dead node %s (%s)", dead, va.Name)
			}
			if va.Spec.NodeName != p.Spec.NodeName || !va.Status.Attached {
				return fmt.Errorf("attachment %s to %s, attached %v", va.Name, va.Spec.NodeName, va.Status.Attached)
			}
		}
		moved = p.Spec.NodeName
		return nil
	})
	return dead, moved
}

func restoreNode(t *testing.T, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := plane.RestoreNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	if err := runner.HealNode(ctx, node); err != nil {
		t.Fatal(err)
	}
}

// failingVolume is a bound CSI volume with a file written, for the failover tests.
func failingVolume(t *testing.T, ctx context.Context, c client.Client, ns string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume, client.ObjectKey, string) {
	t.Helper()
	claim := fixture.Claim(fixture.Namespace(t, ctx, plane, ns), "moving", fixture.OnClass(fixture.CSIManagedClass), fixture.Size("64Mi"))
	pv := bound(t, ctx, c, claim)
	uid := pvClaimUID(t, ctx, c, claim)
	backing := &corev1.PersistentVolumeClaim{}
	podKey := client.ObjectKey{Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(uid)}
	if err := c.Get(ctx, podKey, backing); err != nil {
		t.Fatal(err)
	}
	return claim, pv, podKey, backing.Spec.VolumeName
}

// A CSI volume fails over like a legacy one: the server's node dies, the fencer releases the
// backing disk's VolumeAttachment there, external-attacher attaches the disk to the
// replacement's node, and the files written before are served again at the same Service IP.
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	claim, pv, podKey, backingPV := failingVolume(t, ctx, c, "failover")
	files := map[string]string{"before.txt": "written before the node died"}
	writeFiles(t, ctx, address(t, pv), files)
	dead, _ := killServerNode(t, ctx, c, podKey, backingPV)
	t.Cleanup(func() { restoreNode(t, dead) })
	readFiles(t, ctx, address(t, pv), files)
	sv := &swv1.SharedVolume{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
		t.Fatal(err)
	}
	if sv.Status.FailoverCount < 1 || sv.Status.ServiceIP != pv.Spec.CSI.VolumeAttributes[csidriver.ContextServer] {
		t.Errorf("after the failover: %d failovers, Service IP %s (PV names %s)", sv.Status.FailoverCount, sv.Status.ServiceIP, pv.Spec.CSI.VolumeAttributes[csidriver.ContextServer])
	}
}

// The server's node is killed again and again (SHAREWARDEN_NODE_KILLS times, 20 by default):
// after every move of the CSI disk, a file written before each kill is read back with all the
// earlier ones.
func TestRepeatedNodeKills(t *testing.T) {
	kills := 20
	if v := os.Getenv("SHAREWARDEN_NODE_KILLS"); v != "" {
		if _, err := fmt.Sscan(v, &kills); err != nil {
			t.Fatalf("SHAREWARDEN_NODE_KILLS=%q: %v", v, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(kills)*time.Minute+3*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	claim, pv, podKey, backingPV := failingVolume(t, ctx, c, "kills")
	files := map[string]string{}
	for i := range kills {
		name := fmt.Sprintf("before-kill-%02d.txt", i+1)
		files[name] = name
		writeFiles(t, ctx, address(t, pv), map[string]string{name: name})
		dead, moved := killServerNode(t, ctx, c, podKey, backingPV)
		readFiles(t, ctx, address(t, pv), files)
		t.Logf("kill %d/%d: %s -> %s", i+1, kills, dead, moved)
		restoreNode(t, dead)
	}
	sv := &swv1.SharedVolume{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
		t.Fatal(err)
	}
	if int(sv.Status.FailoverCount) < kills {
		t.Errorf("%d failovers recorded, want %d", sv.Status.FailoverCount, kills)
	}
}
