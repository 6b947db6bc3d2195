package provisioner

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// The backing class local-rwo's driver in newEnv.
const backingDriver = "kubernetes.io/no-provisioner"

func snapshotClass(name, driver string, isDefault bool) *snapshotv1.VolumeSnapshotClass {
	c := &snapshotv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: driver, DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete}
	if isDefault {
		c.Annotations = map[string]string{AnnotationDefaultSnapshotClass: "true"}
	}
	return c
}

func TestPickSnapshotClass(t *testing.T) {
	classes := func(cs ...*snapshotv1.VolumeSnapshotClass) []snapshotv1.VolumeSnapshotClass {
		var out []snapshotv1.VolumeSnapshotClass
		for _, c := range cs {
			out = append(out, *c)
		}
		return out
	}
	def, plain := snapshotClass("disk-default", "disk.example.com", true), snapshotClass("disk-plain", "disk.example.com", false)
	otherDef := snapshotClass("other-default", "other.example.com", true)
	for _, tc := range []struct {
		name    string
		classes []snapshotv1.VolumeSnapshotClass
		named   string
		want    string
		wantErr []string
	}{
		{name: "named", classes: classes(def, plain, otherDef), named: "disk-plain", want: "disk-plain"},
		{name: "named, of another driver", classes: classes(def, otherDef), named: "other-default",
			wantErr: []string{"other-default is of driver other.example.com", "disk.example.com", `"snapshotClass"`}},
		{name: "named, missing", classes: classes(def), named: "gone",
			wantErr: []string{"gone", "does not exist", `"snapshotClass"`, "disk.example.com"}},
		{name: "the one default", classes: classes(plain, def, otherDef), want: "disk-default"},
		{name: "no default", classes: classes(plain, otherDef),
			wantErr: []string{"local-rwo", "no default VolumeSnapshotClass", AnnotationDefaultSnapshotClass, `"snapshotClass"`}},
		{name: "no class at all", wantErr: []string{AnnotationDefaultSnapshotClass}},
		{name: "two defaults", classes: classes(def, snapshotClass("disk-default-2", "disk.example.com", true)),
			wantErr: []string{"2 default VolumeSnapshotClasses", "disk-default", "disk-default-2", "keep one default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PickSnapshotClass(tc.classes, "disk.example.com", tc.named, "local-rwo")
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Errorf("got %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q, want an error", got)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestBackingSnapshot(t *testing.T) {
	v := testVolume()
	backing := BackingClaim(v)
	vs := BackingSnapshot("snapshot-1", backing, "disk-default")
	if vs.Namespace != sysNS || vs.Name != "snapshot-1" || ptr.Deref(vs.Spec.Source.PersistentVolumeClaimName, "") != backing.Name ||
		ptr.Deref(vs.Spec.VolumeSnapshotClassName, "") != "disk-default" || vs.Annotations[swv1.AnnotationBackingStorageClass] != "local-rwo" {
		t.Errorf("backing snapshot %+v", vs)
	}
	for _, k := range []string{swv1.LabelClaimUID, swv1.LabelClaimNamespace, swv1.LabelClaimName, swv1.LabelManagedBy} {
		if vs.Labels[k] != backing.Labels[k] {
			t.Errorf("label %s=%q, want %q", k, vs.Labels[k], backing.Labels[k])
		}
	}
	if !IsBackingSnapshot(vs) {
		t.Error("IsBackingSnapshot of a backing snapshot")
	}
	for _, labels := range []map[string]string{
		nil,
		{swv1.LabelManagedBy: swv1.ManagedByController},
		{swv1.LabelClaimUID: string(v.Claim.UID)},
		{swv1.LabelManagedBy: "someone", swv1.LabelClaimUID: string(v.Claim.UID)},
	} {
		if IsBackingSnapshot(&snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Labels: labels}}) {
			t.Errorf("IsBackingSnapshot with labels %v", labels)
		}
	}
}

func (e *env) snapshotRequest(name string) *csi.CreateSnapshotRequest {
	return &csi.CreateSnapshotRequest{Name: name, SourceVolumeId: PVName(e.uid)}
}

func TestCreateSnapshot(t *testing.T) {
	e := newCSIEnv(t,
		snapshotClass("disk-default", backingDriver, true),
		snapshotClass("disk-plain", backingDriver, false),
		snapshotClass("other-default", "other.example.com", true))
	e.serveCSI()
	c := e.controller()
	ctx := context.Background()
	name := "snapshot-6f1c"

	resp, err := c.CreateSnapshot(timeout(t), e.snapshotRequest(name))
	if err != nil {
		t.Fatal(err)
	}
	snap := resp.GetSnapshot()
	if snap.GetSnapshotId() != name || snap.GetSourceVolumeId() != PVName(e.uid) || snap.GetReadyToUse() || snap.GetSizeBytes() != 5*gi || snap.GetCreationTime() == nil {
		t.Errorf("snapshot %v", snap)
	}
	vs := &snapshotv1.VolumeSnapshot{}
	if !e.get(vs, sysNS, name) {
		t.Fatal("no backing snapshot")
	}
	if src := ptr.Deref(vs.Spec.Source.PersistentVolumeClaimName, ""); src != swv1.ObjectName(e.uid) {
		t.Errorf("backing snapshot of %q, want the backing claim sw-%s", src, e.uid)
	}
	if class := ptr.Deref(vs.Spec.VolumeSnapshotClassName, ""); class != "disk-default" {
		t.Errorf("backing snapshot class %q, want the backing driver's default", class)
	}
	for k, want := range map[string]string{swv1.LabelManagedBy: swv1.ManagedByController, swv1.LabelClaimUID: e.uid, swv1.LabelClaimNamespace: "app", swv1.LabelClaimName: "data"} {
		if vs.Labels[k] != want {
			t.Errorf("backing snapshot label %s=%q, want %q", k, vs.Labels[k], want)
		}
	}

	// Asked again: the same snapshot, ready once the backing one is.
	resp, err = c.CreateSnapshot(timeout(t), e.snapshotRequest(name))
	if err != nil || resp.GetSnapshot().GetReadyToUse() {
		t.Errorf("second call: %v, %v", resp, err)
	}
	vs.Status = &snapshotv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(true), RestoreSize: ptr.To(resource.MustParse("6Gi")), CreationTime: ptr.To(metav1.Now())}
	if err := e.c.Status().Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	resp, err = c.CreateSnapshot(timeout(t), e.snapshotRequest(name))
	if err != nil || !resp.GetSnapshot().GetReadyToUse() || resp.GetSnapshot().GetSizeBytes() != 6*gi {
		t.Errorf("once ready: %v, %v", resp, err)
	}
	list := &snapshotv1.VolumeSnapshotList{}
	if err := e.c.List(ctx, list); err != nil || len(list.Items) != 1 {
		t.Errorf("%d snapshots after three calls, want 1 (%v)", len(list.Items), err)
	}

	// A snapshot class named by the request's parameter.
	req := e.snapshotRequest("snapshot-named")
	req.Parameters = map[string]string{swv1.ParameterSnapshotClass: "disk-plain"}
	if _, err := c.CreateSnapshot(timeout(t), req); err != nil {
		t.Fatal(err)
	}
	if e.get(vs, sysNS, "snapshot-named"); ptr.Deref(vs.Spec.VolumeSnapshotClassName, "") != "disk-plain" {
		t.Errorf("named class not used: %v", vs.Spec.VolumeSnapshotClassName)
	}

	// The name taken by another volume's snapshot, or by a VolumeSnapshot ShareWarden did not make.
	for _, other := range []*snapshotv1.VolumeSnapshot{
		backingSnapshotOf("snapshot-other", "00000000-0000-4000-8000-000000000000", "local-rwo"),
		{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: "snapshot-foreign"}},
	} {
		if err := e.c.Create(ctx, other); err != nil {
			t.Fatal(err)
		}
		_, err := c.CreateSnapshot(timeout(t), e.snapshotRequest(other.Name))
		wantCode(t, err, codes.AlreadyExists, other.Name, "another volume")
	}

	for _, tc := range []struct {
		req  *csi.CreateSnapshotRequest
		code codes.Code
	}{
		{&csi.CreateSnapshotRequest{SourceVolumeId: PVName(e.uid)}, codes.InvalidArgument},
		{&csi.CreateSnapshotRequest{Name: "s"}, codes.InvalidArgument},
		{&csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "pvc-00000000-0000-4000-8000-000000000000"}, codes.NotFound},
		{&csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "disk-7"}, codes.NotFound},
	} {
		_, err := c.CreateSnapshot(timeout(t), tc.req)
		wantCode(t, err, tc.code)
	}
}

// TestCreateSnapshotWithoutSnapshotClass: the call fails with what to create, and the RWX
// claim's Events say the same.
func TestCreateSnapshotWithoutSnapshotClass(t *testing.T) {
	e := newCSIEnv(t, snapshotClass("other-default", "other.example.com", true))
	e.serveCSI()
	events := &eventLog{}
	e.r.Recorder = events
	_, err := e.controller().CreateSnapshot(timeout(t), e.snapshotRequest("snapshot-1"))
	wantCode(t, err, codes.FailedPrecondition, "local-rwo", AnnotationDefaultSnapshotClass, `"snapshotClass"`)
	if e.get(&snapshotv1.VolumeSnapshot{}, sysNS, "snapshot-1") {
		t.Error("backing snapshot created without a class")
	}
	events.mu.Lock()
	defer events.mu.Unlock()
	found := false
	for _, ev := range events.events {
		if ev.reason != ReasonCannotSnapshot {
			continue
		}
		found = true
		if ev.typ != corev1.EventTypeWarning || ev.regarding != (client.ObjectKey{Namespace: "app", Name: "data"}) || string(ev.uid) != e.uid ||
			!strings.Contains(ev.message, AnnotationDefaultSnapshotClass) {
			t.Errorf("event %+v, want a Warning on claim app/data saying what to create", ev)
		}
	}
	if !found {
		t.Errorf("no %s event; events: %+v", ReasonCannotSnapshot, events.events)
	}
}

func TestDeleteSnapshot(t *testing.T) {
	e := newCSIEnv(t, snapshotClass("disk-default", backingDriver, true))
	e.serveCSI()
	c := e.controller()
	if _, err := c.CreateSnapshot(timeout(t), e.snapshotRequest("snapshot-1")); err != nil {
		t.Fatal(err)
	}
	foreign := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: "snapshot-foreign"}}
	if err := e.c.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	_, err := c.DeleteSnapshot(timeout(t), &csi.DeleteSnapshotRequest{})
	wantCode(t, err, codes.InvalidArgument)
	for _, id := range []string{"snapshot-1", "snapshot-1", "snapshot-missing", "a/b", "snapshot-foreign"} {
		if _, err := c.DeleteSnapshot(timeout(t), &csi.DeleteSnapshotRequest{SnapshotId: id}); err != nil {
			t.Errorf("DeleteSnapshot(%s): %v", id, err)
		}
	}
	if e.get(&snapshotv1.VolumeSnapshot{}, sysNS, "snapshot-1") {
		t.Error("backing snapshot not deleted")
	}
	if !e.get(&snapshotv1.VolumeSnapshot{}, sysNS, "snapshot-foreign") {
		t.Error("a VolumeSnapshot ShareWarden did not make was deleted")
	}
}

func TestSnapshotDataSource(t *testing.T) {
	const handle = "snapshot-6f1c"
	uid := string(testVolume().Claim.UID)
	// objects are a user's ready VolumeSnapshot app/snap of ShareWarden's driver, its content,
	// and the backing snapshot its handle names.
	objects := func() (*snapshotv1.VolumeSnapshot, *snapshotv1.VolumeSnapshotContent, *snapshotv1.VolumeSnapshot) {
		user := &snapshotv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "snap"},
			Spec:       snapshotv1.VolumeSnapshotSpec{Source: snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To("data")}},
			Status:     &snapshotv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(true), BoundVolumeSnapshotContentName: ptr.To("snapcontent-1")},
		}
		content := &snapshotv1.VolumeSnapshotContent{
			ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-1"},
			Spec: snapshotv1.VolumeSnapshotContentSpec{
				Driver: swv1.CSIDriverName, DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete,
				VolumeSnapshotRef: corev1.ObjectReference{Namespace: "app", Name: "snap"},
			},
			Status: &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To(handle), ReadyToUse: ptr.To(true)},
		}
		return user, content, backingSnapshotOf(handle, uid, "local-rwo")
	}
	for _, tc := range []struct {
		name   string
		change func(user *snapshotv1.VolumeSnapshot, content *snapshotv1.VolumeSnapshotContent, backing *snapshotv1.VolumeSnapshot) []client.Object
		// fatal and message describe the problem; "" for none.
		fatal   bool
		message []string
	}{
		{name: "restorable"},
		{name: "missing", change: func(*snapshotv1.VolumeSnapshot, *snapshotv1.VolumeSnapshotContent, *snapshotv1.VolumeSnapshot) []client.Object {
			return nil
		}, message: []string{"snap", "does not exist"}},
		{name: "not ready", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			u.Status.ReadyToUse = ptr.To(false)
			return []client.Object{u, c, b}
		}, message: []string{"not ready to use yet"}},
		{name: "no status yet", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			u.Status = nil
			return []client.Object{u, c, b}
		}, message: []string{"not ready to use yet"}},
		{name: "content missing", change: func(u *snapshotv1.VolumeSnapshot, _ *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			return []client.Object{u, b}
		}, message: []string{"snapcontent-1", "does not exist"}},
		{name: "of another driver", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			c.Spec.Driver = "disk.example.com"
			return []client.Object{u, c, b}
		}, fatal: true, message: []string{"of driver disk.example.com", "restore it into a ReadWriteOnce claim of its own driver"}},
		{name: "backing snapshot gone", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, _ *snapshotv1.VolumeSnapshot) []client.Object {
			return []client.Object{u, c}
		}, fatal: true, message: []string{handle, "does not exist any more"}},
		{name: "no snapshot handle", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			c.Status.SnapshotHandle = nil
			return []client.Object{u, c, b}
		}, fatal: true, message: []string{"does not exist any more"}},
		{name: "backing snapshot not ShareWarden's", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			b.Labels = nil
			return []client.Object{u, c, b}
		}, fatal: true, message: []string{"not made by ShareWarden"}},
		{name: "backing snapshot of another backing class", change: func(u *snapshotv1.VolumeSnapshot, c *snapshotv1.VolumeSnapshotContent, b *snapshotv1.VolumeSnapshot) []client.Object {
			b.Annotations[swv1.AnnotationBackingStorageClass] = "fast-rwo"
			return []client.Object{u, c, b}
		}, fatal: true, message: []string{"backed by class fast-rwo", "back the restore with fast-rwo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, content, backing := objects()
			objs := []client.Object{user, content, backing}
			if tc.change != nil {
				objs = tc.change(user, content, backing)
			}
			e := newEnv(t, objs...)
			ds, p, err := e.r.snapshotDataSource(context.Background(), "app", "snap", "local-rwo")
			if err != nil {
				t.Fatal(err)
			}
			if tc.message == nil {
				if p != nil {
					t.Fatalf("problem %+v", p)
				}
				if ds == nil || ptr.Deref(ds.APIGroup, "") != snapshotv1.GroupName || ds.Kind != "VolumeSnapshot" || ds.Name != handle {
					t.Errorf("data source %+v, want VolumeSnapshot %s of %s", ds, handle, snapshotv1.GroupName)
				}
				return
			}
			if p == nil {
				t.Fatalf("no problem; data source %+v", ds)
			}
			if ds != nil || p.Fatal != tc.fatal || (p.Reason != ReasonBadDataSource && p.Reason != ReasonConflict) {
				t.Errorf("problem %+v with data source %+v; want fatal %v", p, ds, tc.fatal)
			}
			for _, s := range tc.message {
				if !strings.Contains(p.Message, s) {
					t.Errorf("message %q does not say %q", p.Message, s)
				}
			}
		})
	}
}

// TestRestoreUsesTheBackingSnapshot: a claim restoring a ShareWarden snapshot gets a backing
// claim restoring the backing snapshot.
func TestRestoreUsesTheBackingSnapshot(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	ctx := context.Background()
	content := &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: "snapcontent-1"},
		Spec:       snapshotv1.VolumeSnapshotContentSpec{Driver: swv1.CSIDriverName, DeletionPolicy: snapshotv1.VolumeSnapshotContentDelete},
	}
	user := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "snap"},
		Spec: snapshotv1.VolumeSnapshotSpec{Source: snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To("data")}}}
	for _, obj := range []client.Object{content, user, backingSnapshotOf("snapshot-1", e.uid, "local-rwo")} {
		if err := e.c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	content.Status = &snapshotv1.VolumeSnapshotContentStatus{SnapshotHandle: ptr.To("snapshot-1"), ReadyToUse: ptr.To(true)}
	user.Status = &snapshotv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(true), BoundVolumeSnapshotContentName: ptr.To(content.Name)}
	if err := e.c.Status().Update(ctx, content); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Status().Update(ctx, user); err != nil {
		t.Fatal(err)
	}
	restore := testVolume().Claim.DeepCopy()
	restore.Name, restore.UID = "restored", "7e570000-0000-4000-8000-000000000003"
	restore.Annotations = map[string]string{swv1.AnnotationBackingStorageClass: "local-rwo"}
	restore.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr.To(snapshotv1.GroupName), Kind: "VolumeSnapshot", Name: "snap"}
	if err := e.c.Create(ctx, restore); err != nil {
		t.Fatal(err)
	}
	e.req.Name = "restored"
	e.reconcile()
	backing := &corev1.PersistentVolumeClaim{}
	if !e.get(backing, sysNS, swv1.ObjectName(string(restore.UID))) {
		t.Fatalf("restore's backing claim not created: %+v", e.sv())
	}
	if ds := backing.Spec.DataSource; ds == nil || ptr.Deref(ds.APIGroup, "") != snapshotv1.GroupName || ds.Kind != "VolumeSnapshot" || ds.Name != "snapshot-1" {
		t.Errorf("restore's backing data source %+v, want backing snapshot snapshot-1", ds)
	}
}
