package provisioner

import (
	"context"
	"strings"
	"testing"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

type env struct {
	t   *testing.T
	c   client.Client
	rec *events.FakeRecorder
	r   *Reconciler
	req ctrl.Request
	uid string
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	scheme, err := Scheme()
	if err != nil {
		t.Fatal(err)
	}
	claim := testVolume().Claim.DeepCopy()
	claim.Annotations = map[string]string{swv1.AnnotationBackingStorageClass: "local-rwo"}
	base := []client.Object{
		claim,
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sharewarden-nfs"}, Provisioner: swv1.Provisioner, AllowVolumeExpansion: ptr.To(true)},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-rwo"}, Provisioner: "kubernetes.io/no-provisioner", AllowVolumeExpansion: ptr.To(true)},
	}
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(append(base, objs...)...).
		WithStatusSubresource(&swv1.SharedVolume{}, &corev1.PersistentVolumeClaim{}, &corev1.Pod{},
			&snapshotv1.VolumeSnapshot{}, &snapshotv1.VolumeSnapshotContent{}).
		WithIndex(&corev1.Pod{}, IndexPodClaims, podClaimNames).
		WithIndex(&corev1.PersistentVolume{}, IndexClaimKey, claimKeyIndex).
		WithIndex(&corev1.PersistentVolumeClaim{}, IndexClaimKey, claimKeyIndex).
		Build()
	rec := events.NewFakeRecorder(100)
	cfg := NewOptions()
	return &env{
		t: t, c: c, rec: rec,
		r:   &Reconciler{Client: c, Recorder: rec, Config: cfg.config()},
		req: ctrl.Request{NamespacedName: client.ObjectKey{Namespace: "app", Name: "data"}},
		uid: string(claim.UID),
	}
}

func (e *env) reconcile() ctrl.Result {
	e.t.Helper()
	res, err := e.r.Reconcile(context.Background(), e.req)
	if err != nil {
		e.t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (e *env) get(obj client.Object, ns, name string) bool {
	e.t.Helper()
	err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		e.t.Fatal(err)
	}
	return err == nil
}

func (e *env) sv() *swv1.SharedVolume {
	sv := &swv1.SharedVolume{}
	if !e.get(sv, "app", "data") {
		return nil
	}
	return sv
}

func (e *env) events() string {
	var out []string
	for {
		select {
		case ev := <-e.rec.Events:
			out = append(out, ev)
		default:
			return strings.Join(out, "\n")
		}
	}
}

const (
	sysNS         = "sharewarden-system"
	testServiceIP = "10.96.0.5"
)

// provisionToReady drives a volume through the fake API to Ready, playing the other
// controllers' parts (backing binding, kubelet readiness, PV binding).
func (e *env) provisionToReady() {
	e.t.Helper()
	ctx := context.Background()
	e.reconcile()
	name := swv1.ObjectName(e.uid)
	backing := &corev1.PersistentVolumeClaim{}
	pod := &corev1.Pod{}
	if !e.get(backing, sysNS, name) || !e.get(&corev1.Service{}, sysNS, name) || !e.get(pod, sysNS, name) {
		e.t.Fatal("first pass must create backing claim, service and server pod")
	}
	if e.get(&corev1.PersistentVolume{}, "", "pvc-"+e.uid) {
		e.t.Fatal("PV created before the server was ready")
	}
	if sv := e.sv(); sv == nil || sv.Status.Phase != swv1.PhaseProvisioning {
		e.t.Fatalf("SharedVolume after first pass: %+v", sv)
	}
	// The apiserver allocates the ClusterIP; the fake does not.
	svc := &corev1.Service{}
	e.get(svc, sysNS, name)
	svc.Spec.ClusterIP = testServiceIP
	if err := e.c.Update(ctx, svc); err != nil {
		e.t.Fatal(err)
	}
	backing.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}
	pod.Spec.NodeName = "node-a1"
	if err := e.c.Update(ctx, pod); err != nil {
		e.t.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := e.c.Status().Update(ctx, backing); err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.Status().Update(ctx, pod); err != nil {
		e.t.Fatal(err)
	}
	e.reconcile()
	if !e.get(&corev1.PersistentVolume{}, "", "pvc-"+e.uid) {
		e.t.Fatal("PV not created once the server was ready")
	}
	claim := &corev1.PersistentVolumeClaim{}
	e.get(claim, "app", "data")
	claim.Spec.VolumeName = "pvc-" + e.uid
	if err := e.c.Update(ctx, claim); err != nil {
		e.t.Fatal(err)
	}
	claim.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}
	if err := e.c.Status().Update(ctx, claim); err != nil {
		e.t.Fatal(err)
	}
	e.reconcile()
	if sv := e.sv(); sv.Status.Phase != swv1.PhaseReady || sv.Status.Server.NodeName != "node-a1" {
		e.t.Fatalf("want Ready on node-a1, got %+v", sv.Status)
	}
}

// TestFirstPassOneEvent: a new volume's first pass creates three objects and tells them in one
// Event, named after the furthest step (each Event is an apiserver write).
func TestFirstPassOneEvent(t *testing.T) {
	e := newEnv(t)
	e.reconcile()
	ev := strings.Split(e.events(), "\n")
	if len(ev) != 1 {
		t.Fatalf("first pass told %d Events, want 1:\n%s", len(ev), strings.Join(ev, "\n"))
	}
	name := sysNS + "/" + swv1.ObjectName(e.uid)
	for _, want := range []string{
		"Normal " + ReasonServerStarting + " ",
		"created backing claim " + name + " (",
		"; created service " + name + " at ",
		"; starting NFS server pod " + name,
	} {
		if !strings.Contains(ev[0], want) {
			t.Errorf("first pass's Event %q lacks %q", ev[0], want)
		}
	}
	// A later pass that makes only a lost Service again says just that, under its own reason.
	svc := &corev1.Service{}
	e.get(svc, sysNS, swv1.ObjectName(e.uid))
	svc.Finalizers = nil
	if err := e.c.Update(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	got := e.events()
	if !strings.HasPrefix(got, "Normal "+ReasonServiceCreated+" created service "+name) || strings.Contains(got, "\n") || strings.Contains(got, "backing claim") {
		t.Errorf("pass recreating the Service told:\n%s", got)
	}
}

func TestReconcileProvisionsAndIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	ev := e.events()
	for _, reason := range []string{ReasonServerStarting, ReasonServerReady, ReasonProvisioned} {
		if !strings.Contains(ev, reason) {
			t.Errorf("no %s event; events:\n%s", reason, ev)
		}
	}
	// Another pass changes nothing and says nothing.
	before := e.sv().ResourceVersion
	e.reconcile()
	if e.sv().ResourceVersion != before {
		t.Error("an idle pass rewrote the SharedVolume")
	}
	if ev := e.events(); ev != "" {
		t.Errorf("an idle pass emitted events:\n%s", ev)
	}
}

func TestReconcileRefusesForeignBackingClaim(t *testing.T) {
	uid := string(testVolume().Claim.UID)
	foreign := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: swv1.ObjectName(uid),
		Labels: map[string]string{swv1.LabelClaimUID: uid}}} // a user copied the label, not managed-by
	e := newEnv(t, foreign)
	e.reconcile()
	if sv := e.sv(); sv.Status.Phase != swv1.PhaseFailed {
		t.Errorf("phase %s, want Failed", sv.Status.Phase)
	}
	if e.get(&corev1.Pod{}, sysNS, swv1.ObjectName(uid)) {
		t.Error("a server was started on a claim ShareWarden did not create")
	}
	if ev := e.events(); !strings.Contains(ev, ReasonConflict) {
		t.Errorf("no conflict event:\n%s", ev)
	}
}

func TestReconcileMissingBackingClass(t *testing.T) {
	e := newEnv(t)
	if err := e.c.Delete(context.Background(), &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-rwo"}}); err != nil {
		t.Fatal(err)
	}
	res := e.reconcile()
	if res.RequeueAfter == 0 {
		t.Error("a missing class must be looked at again")
	}
	if sv := e.sv(); sv.Status.Phase != swv1.PhasePending {
		t.Errorf("phase %s, want Pending", sv.Status.Phase)
	}
	if ev := e.events(); !strings.Contains(ev, ReasonBackingClassMissing) || !strings.Contains(ev, "local-rwo") {
		t.Errorf("event should name the missing class:\n%s", ev)
	}
	if e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) {
		t.Error("backing claim created without a backing class")
	}
}

func TestReconcileDeleteAndRetain(t *testing.T) {
	for _, policy := range []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain} {
		t.Run(string(policy), func(t *testing.T) {
			e := newEnv(t)
			e.provisionToReady()
			ctx := context.Background()
			pv := &corev1.PersistentVolume{}
			e.get(pv, "", "pvc-"+e.uid)
			pv.Spec.PersistentVolumeReclaimPolicy = policy
			if err := e.c.Update(ctx, pv); err != nil {
				t.Fatal(err)
			}
			if err := e.c.Delete(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}}); err != nil {
				t.Fatal(err)
			}
			e.events()
			for range 3 {
				e.reconcile()
			}
			name := swv1.ObjectName(e.uid)
			if e.get(&corev1.Pod{}, sysNS, name) || e.get(&corev1.Service{}, sysNS, name) {
				t.Error("server or service left behind")
			}
			if e.sv() != nil {
				t.Error("SharedVolume left behind")
			}
			keptPV, keptBacking := e.get(&corev1.PersistentVolume{}, "", "pvc-"+e.uid), e.get(&corev1.PersistentVolumeClaim{}, sysNS, name)
			retain := policy == corev1.PersistentVolumeReclaimRetain
			if keptPV != retain || keptBacking != retain {
				t.Errorf("policy %s: PV kept %v, backing claim kept %v", policy, keptPV, keptBacking)
			}
			want := map[bool]string{true: ReasonRetained, false: ReasonDeleted}[retain]
			if ev := e.events(); !strings.Contains(ev, want) {
				t.Errorf("no %s event:\n%s", want, ev)
			}
		})
	}
}

func TestReconcileExpand(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	ctx := context.Background()
	grow := func() {
		claim := &corev1.PersistentVolumeClaim{}
		e.get(claim, "app", "data")
		q := claim.Spec.Resources.Requests[corev1.ResourceStorage]
		q.Add(resource.MustParse("5Gi"))
		claim.Spec.Resources.Requests[corev1.ResourceStorage] = q
		if err := e.c.Update(ctx, claim); err != nil {
			t.Fatal(err)
		}
		e.reconcile()
	}
	grow()
	backing := &corev1.PersistentVolumeClaim{}
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	if q := backing.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Fatalf("backing request %s, want 10Gi", q.String())
	}
	// The backing volume grows: the PV and the claim's capacity follow.
	backing.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("10Gi")
	if err := e.c.Status().Update(ctx, backing); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.reconcile()
	pv := &corev1.PersistentVolume{}
	e.get(pv, "", "pvc-"+e.uid)
	claim := &corev1.PersistentVolumeClaim{}
	e.get(claim, "app", "data")
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("PV capacity %s, want 10Gi", q.String())
	}
	if q := claim.Status.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("claim capacity %s, want 10Gi", q.String())
	}
	ev := e.events()
	if !strings.Contains(ev, ReasonResizing) || !strings.Contains(ev, ReasonResized) {
		t.Errorf("resize events missing:\n%s", ev)
	}

	// A backing class that cannot expand: an Event says so and nothing changes.
	sc := &storagev1.StorageClass{}
	e.get(sc, "", "local-rwo")
	sc.AllowVolumeExpansion = ptr.To(false)
	if err := e.c.Update(ctx, sc); err != nil {
		t.Fatal(err)
	}
	grow()
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	if q := backing.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("10Gi")) != 0 {
		t.Errorf("backing request changed to %s on a class without expansion", q.String())
	}
	if ev := e.events(); !strings.Contains(ev, ReasonCannotExpand) {
		t.Errorf("no %s event:\n%s", ReasonCannotExpand, ev)
	}
}

func TestReconcileIgnoresUnmanagedClaims(t *testing.T) {
	e := newEnv(t)
	claim := &corev1.PersistentVolumeClaim{}
	e.get(claim, "app", "data")
	claim.Spec.StorageClassName = ptr.To("local-rwo")
	if err := e.c.Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	if e.sv() != nil || e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) {
		t.Error("a claim on an unmanaged class was provisioned")
	}
}

// TestProgressWaitsForItsBurst: a provisioning volume's progress is written once its burst is
// over (ProgressHold), and the server becoming Ready at once.
func TestProgressWaitsForItsBurst(t *testing.T) {
	e := newEnv(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.r.Now = func() time.Time { return clock }
	ctx := context.Background()
	e.reconcile()
	name := swv1.ObjectName(e.uid)
	svc := &corev1.Service{}
	e.get(svc, sysNS, name)
	svc.Spec.ClusterIP = testServiceIP
	if err := e.c.Update(ctx, svc); err != nil {
		t.Fatal(err)
	}
	e.reconcile() // the Service's address: not progress only (Servable needs it), written
	rv := e.sv().ResourceVersion

	backing := &corev1.PersistentVolumeClaim{}
	e.get(backing, sysNS, name)
	backing.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}
	if err := e.c.Status().Update(ctx, backing); err != nil {
		t.Fatal(err)
	}
	res := e.reconcile()
	if got := e.sv(); got.ResourceVersion != rv {
		t.Fatalf("the backing claim's binding was written at once: %+v", got.Status.Conditions)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > ProgressHold {
		t.Fatalf("held progress requeued after %v, want (0, %v]", res.RequeueAfter, ProgressHold)
	}
	clock = clock.Add(ProgressHold / 2)
	pod := &corev1.Pod{}
	e.get(pod, sysNS, name)
	pod.Spec.NodeName = "node-a1"
	if err := e.c.Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if res := e.reconcile(); e.sv().ResourceVersion != rv || res.RequeueAfter != ProgressHold/2 {
		t.Fatalf("scheduling within the hold: written %v, requeue %v; want held, requeue %v", e.sv().ResourceVersion != rv, res.RequeueAfter, ProgressHold/2)
	}
	clock = clock.Add(ProgressHold / 2)
	e.reconcile()
	sv := e.sv()
	if sv.ResourceVersion == rv || !meta.IsStatusConditionTrue(sv.Status.Conditions, swv1.ConditionBackingBound) || sv.Status.Server.NodeName != "node-a1" {
		t.Fatalf("after the hold, the burst is not written: %+v", sv.Status)
	}
	rv = sv.ResourceVersion

	// The server's Readiness is what CreateVolume waits for: never held.
	e.get(pod, sysNS, name)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := e.c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	if sv := e.sv(); sv.ResourceVersion == rv || !Servable(sv.Status) {
		t.Fatalf("server Ready not written at once: %+v", sv.Status)
	}
}
