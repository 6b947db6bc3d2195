package provisioner

import (
	"context"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
)

// deleteNow deletes obj and, as an operator who strips finalizers would, lets it go at once.
func (e *env) deleteNow(obj client.Object) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		e.t.Fatal(err)
	}
	if len(obj.GetFinalizers()) > 0 {
		obj.SetFinalizers(nil)
		if err := e.c.Update(ctx, obj); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.c.Delete(ctx, obj); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) del(obj client.Object) {
	e.t.Helper()
	if err := e.c.Delete(context.Background(), obj); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) runServer() *corev1.Pod {
	e.t.Helper()
	pod := &corev1.Pod{}
	e.get(pod, sysNS, swv1.ObjectName(e.uid))
	if pod.UID == "" { // the fake assigns none
		pod.UID = "server-pod-uid"
		if err := e.c.Update(context.Background(), pod); err != nil {
			e.t.Fatal(err)
		}
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := e.c.Status().Update(context.Background(), pod); err != nil {
		e.t.Fatal(err)
	}
	return pod
}

// TestMissingDependencyReleasesNothing deletes, one at a time, each object a live volume owns or
// depends on: the data (backing claim and PV) stays, the volume stays Ready at the same address,
// and an Event tells what happened.
func TestMissingDependencyReleasesNothing(t *testing.T) {
	objRef := func(obj client.Object, ns, name string) client.Object {
		obj.SetNamespace(ns)
		obj.SetName(name)
		return obj
	}
	t.Run("lease of a server that never took one", func(t *testing.T) {
		e := newEnv(t)
		e.provisionToReady()
		e.runServer()
		for range 2 {
			e.reconcile()
		}
		if e.get(&coordinationv1.Lease{}, sysNS, swv1.ObjectName(e.uid)) {
			t.Error("the controller made a lease no server ever held: nobody would renew it and the server would be fenced")
		}
	})
	cases := []struct {
		name string
		act  func(e *env)
		// degraded is the Degraded condition's reason, "" for not degraded.
		degraded, event string
		// settle plays the kubelet for a replaced server.
		settle bool
		check  func(t *testing.T, e *env)
	}{
		{
			name:     "managed class",
			act:      func(e *env) { e.del(objRef(&storagev1.StorageClass{}, "", "sharewarden-nfs")) },
			degraded: ReasonManagedClassMissing, event: ReasonManagedClassMissing,
		},
		{
			name:     "backing class",
			act:      func(e *env) { e.del(objRef(&storagev1.StorageClass{}, "", "local-rwo")) },
			degraded: ReasonBackingClassMissing, event: ReasonBackingClassMissing,
		},
		{
			name:     "service, held by its finalizer",
			act:      func(e *env) { e.del(objRef(&corev1.Service{}, sysNS, swv1.ObjectName(e.uid))) },
			degraded: ReasonObjectDeleting, event: ReasonObjectDeleting,
		},
		{
			name:     "backing claim, held by its finalizer",
			act:      func(e *env) { e.del(objRef(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid))) },
			degraded: ReasonObjectDeleting, event: ReasonObjectDeleting,
		},
		{
			name:  "service, finalizer stripped",
			act:   func(e *env) { e.deleteNow(objRef(&corev1.Service{}, sysNS, swv1.ObjectName(e.uid))) },
			event: ReasonServiceCreated,
			check: func(t *testing.T, e *env) {
				svc := &corev1.Service{}
				if !e.get(svc, sysNS, swv1.ObjectName(e.uid)) || svc.Spec.ClusterIP != testServiceIP {
					t.Errorf("service not recreated at %s: %+v", testServiceIP, svc.Spec)
				}
				if !controllerutil.ContainsFinalizer(svc, swv1.FinalizerVolumeProtection) {
					t.Error("recreated service is not protected")
				}
			},
		},
		{
			name:   "server pod",
			act:    func(e *env) { e.deleteNow(objRef(&corev1.Pod{}, sysNS, swv1.ObjectName(e.uid))) },
			event:  ReasonServerStarting,
			settle: true,
		},
		{
			name: "lease",
			act: func(e *env) {
				pod := e.runServer()
				lease := fencing.LeaseFor(pod, nil, 0, e.r.now())
				if err := e.c.Create(context.Background(), lease); err != nil {
					t.Fatal(err)
				}
				e.reconcile() // the volume sees the server hold it
				e.del(lease)
			},
			event: ReasonLeaseRecreated,
			check: func(t *testing.T, e *env) {
				lease := &coordinationv1.Lease{}
				pod := &corev1.Pod{}
				e.get(pod, sysNS, swv1.ObjectName(e.uid))
				if !e.get(lease, sysNS, swv1.ObjectName(e.uid)) || ptr.Deref(lease.Spec.HolderIdentity, "") != fencing.Identity(pod) {
					t.Errorf("lease not recreated in the server's name: %+v", lease.Spec)
				}
				if lease.Labels[swv1.LabelComponent] != swv1.ComponentNFSServer || lease.Labels[swv1.LabelClaimUID] != e.uid {
					t.Errorf("recreated lease labels %v", lease.Labels)
				}
			},
		},
		{
			name:  "shared volume",
			act:   func(e *env) { e.del(objRef(&swv1.SharedVolume{}, "app", "data")) },
			event: ReasonViewRecreated,
			check: func(t *testing.T, e *env) {
				sv := e.sv()
				if sv.DeletionTimestamp != nil || !controllerutil.ContainsFinalizer(sv, swv1.Finalizer) {
					t.Errorf("SharedVolume not recreated: %+v", sv.ObjectMeta)
				}
				if sv.Status.Server.NodeName != "node-a1" {
					t.Errorf("status not carried over: %+v", sv.Status)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.provisionToReady()
			e.runServer()
			e.events()
			tc.act(e)
			for range 3 {
				e.reconcile()
			}
			if tc.settle {
				pod := &corev1.Pod{}
				e.get(pod, sysNS, swv1.ObjectName(e.uid))
				pod.Spec.NodeName = "node-a1"
				if err := e.c.Update(context.Background(), pod); err != nil {
					t.Fatal(err)
				}
				e.runServer()
				e.reconcile()
			}
			backing, pv := &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolume{}
			if !e.get(backing, sysNS, swv1.ObjectName(e.uid)) || !e.get(pv, "", "pvc-"+e.uid) {
				t.Fatal("backing claim or PV deleted")
			}
			if pv.Spec.NFS.Server != testServiceIP {
				t.Errorf("PV moved to %s", pv.Spec.NFS.Server)
			}
			sv := e.sv()
			if sv == nil || sv.Status.Phase != swv1.PhaseReady || sv.Status.ServiceIP != testServiceIP {
				t.Fatalf("volume not Ready at %s: %+v", testServiceIP, sv)
			}
			c := meta.FindStatusCondition(sv.Status.Conditions, swv1.ConditionDegraded)
			switch {
			case c == nil:
				t.Error("no Degraded condition")
			case tc.degraded == "" && c.Status != metav1.ConditionFalse:
				t.Errorf("degraded: %+v", c)
			case tc.degraded != "" && (c.Status != metav1.ConditionTrue || !strings.Contains(c.Reason, tc.degraded) || c.Message == ""):
				t.Errorf("want Degraded %s, got %+v", tc.degraded, c)
			}
			if ev := e.events(); !strings.Contains(ev, tc.event) {
				t.Errorf("no %s event:\n%s", tc.event, ev)
			}
			if tc.check != nil {
				tc.check(t, e)
			}
		})
	}
}

// TestManagedClassComesBack: the volume resumes with the class, and says so.
func TestManagedClassComesBack(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	sc := &storagev1.StorageClass{}
	e.get(sc, "", "sharewarden-nfs")
	e.del(sc)
	e.reconcile()
	e.events()
	sc.ResourceVersion = ""
	if err := e.c.Create(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	sv := e.sv()
	if c := meta.FindStatusCondition(sv.Status.Conditions, swv1.ConditionDegraded); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("still degraded: %+v", c)
	}
	if ev := e.events(); !strings.Contains(ev, ReasonManagedClassBack) {
		t.Errorf("no %s event:\n%s", ReasonManagedClassBack, ev)
	}
}

// TestNewClaimWaitsForItsClass: a claim whose class was never seen is not provisioned.
func TestNewClaimWaitsForItsClass(t *testing.T) {
	e := newEnv(t)
	e.del(&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sharewarden-nfs"}})
	e.reconcile()
	sv := e.sv()
	if sv == nil || sv.Status.Phase != swv1.PhasePending || readyReason(sv.Status) != ReasonManagedClassMissing {
		t.Fatalf("want Pending for the missing class, got %+v", sv)
	}
	if e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) {
		t.Error("backing claim created without the class")
	}
}

// TestReleaseNeedsTheAPIToConfirm: a claim missing from the cache only is no deletion.
func TestReleaseNeedsTheAPIToConfirm(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	claim := &corev1.PersistentVolumeClaim{}
	e.get(claim, "app", "data")
	// The reader (the apiserver) still has the claim; the cache (the client) lost it.
	scheme, _ := Scheme()
	e.r.Reader = fake.NewClientBuilder().WithScheme(scheme).WithObjects(claim.DeepCopy()).Build()
	claim.Finalizers = nil
	e.del(claim)
	for range 3 {
		if res := e.reconcile(); res.RequeueAfter == 0 {
			t.Error("an unconfirmed deletion must be looked at again")
		}
	}
	if !e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) || !e.get(&corev1.Service{}, sysNS, swv1.ObjectName(e.uid)) || e.sv().Status.Phase == swv1.PhaseDeleting {
		t.Fatal("volume released on the cache's word alone")
	}
	e.r.Reader = nil
	for range 3 {
		e.reconcile()
	}
	if e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) || e.sv() != nil {
		t.Error("volume not released once the deletion was confirmed")
	}
}

// TestReleaseWithoutSharedVolume: the claim and its SharedVolume are both gone; the volume is
// found by its labels and released by its PV's policy.
func TestReleaseWithoutSharedVolume(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	e.deleteNow(&swv1.SharedVolume{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}})
	e.deleteNow(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}})
	for range 3 {
		e.reconcile()
	}
	name := swv1.ObjectName(e.uid)
	for _, obj := range []client.Object{&corev1.Pod{}, &corev1.Service{}, &corev1.PersistentVolumeClaim{}} {
		if e.get(obj, sysNS, name) {
			t.Errorf("%T left behind", obj)
		}
	}
	if e.get(&corev1.PersistentVolume{}, "", "pvc-"+e.uid) {
		t.Error("PV left behind under policy Delete")
	}
}

// TestReleaseBeforePV: a claim deleted before its PV existed follows the policy recorded on the
// backing claim, and keeps the data when none is recorded.
func TestReleaseBeforePV(t *testing.T) {
	for _, tc := range []struct {
		annotation string
		kept       bool
	}{{"Delete", false}, {"Retain", true}, {"", true}} {
		t.Run("policy="+tc.annotation, func(t *testing.T) {
			e := newEnv(t)
			e.reconcile()
			backing := &corev1.PersistentVolumeClaim{}
			e.get(backing, sysNS, swv1.ObjectName(e.uid))
			if backing.Annotations[swv1.AnnotationReclaimPolicy] != "Delete" {
				t.Fatalf("backing claim records policy %q, want the class's Delete", backing.Annotations[swv1.AnnotationReclaimPolicy])
			}
			if tc.annotation == "" {
				delete(backing.Annotations, swv1.AnnotationReclaimPolicy)
			} else {
				backing.Annotations[swv1.AnnotationReclaimPolicy] = tc.annotation
			}
			if err := e.c.Update(context.Background(), backing); err != nil {
				t.Fatal(err)
			}
			e.del(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}})
			for range 3 {
				e.reconcile()
			}
			kept := e.get(backing, sysNS, swv1.ObjectName(e.uid))
			if kept != tc.kept {
				t.Errorf("backing claim kept %v, want %v", kept, tc.kept)
			}
			if kept && controllerutil.ContainsFinalizer(backing, swv1.FinalizerVolumeProtection) {
				t.Error("a retained backing claim keeps its protection: nobody could delete it")
			}
			if e.get(&corev1.Pod{}, sysNS, swv1.ObjectName(e.uid)) || e.sv() != nil {
				t.Error("server or SharedVolume left behind")
			}
		})
	}
}

// TestServiceAtAnotherAddressIsReplaced: a Service of the volume at another address than the
// PV's is never reported Ready; it is replaced by one at the PV's address.
func TestServiceAtAnotherAddressIsReplaced(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	e.deleteNow(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: swv1.ObjectName(e.uid)}})
	// Someone recreates it by hand, at an address of the apiserver's choosing.
	wrong := Service(Volume{Claim: testVolume().Claim, Namespace: sysNS})
	wrong.Spec.ClusterIP = "10.96.0.99"
	if err := e.c.Create(context.Background(), wrong); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	if sv := e.sv(); sv.Status.Phase == swv1.PhaseReady || readyReason(sv.Status) != ReasonServiceIPChanged {
		t.Errorf("want not Ready (%s), got %s %s", ReasonServiceIPChanged, sv.Status.Phase, readyReason(sv.Status))
	}
	e.reconcile()
	svc := &corev1.Service{}
	if !e.get(svc, sysNS, swv1.ObjectName(e.uid)) || svc.Spec.ClusterIP != testServiceIP {
		t.Errorf("service not replaced at %s: %+v", testServiceIP, svc.Spec)
	}
	if sv := e.sv(); sv.Status.Phase != swv1.PhaseReady || sv.Status.ServiceIP != testServiceIP {
		t.Errorf("want Ready at %s, got %s at %s", testServiceIP, sv.Status.Phase, sv.Status.ServiceIP)
	}
}

// TestCloneUsesTheSourcesBackingClaim: a clone of a ShareWarden claim clones that claim's
// backing claim; a clone of anything else fails with a reason.
func TestCloneUsesTheSourcesBackingClaim(t *testing.T) {
	e := newEnv(t)
	e.reconcile() // the source "data" gets its backing claim
	clone := testVolume().Claim.DeepCopy()
	clone.Name, clone.UID = "copy", "c10e0000-0000-4000-8000-000000000001"
	clone.Annotations = map[string]string{swv1.AnnotationBackingStorageClass: "local-rwo"}
	clone.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "data"}
	if err := e.c.Create(context.Background(), clone); err != nil {
		t.Fatal(err)
	}
	e.req.Name = "copy"
	e.reconcile()
	backing := &corev1.PersistentVolumeClaim{}
	if !e.get(backing, sysNS, swv1.ObjectName(string(clone.UID))) {
		t.Fatal("clone's backing claim not created")
	}
	if ds := backing.Spec.DataSource; ds == nil || ds.Kind != "PersistentVolumeClaim" || ds.Name != swv1.ObjectName(e.uid) {
		t.Errorf("clone's backing data source %+v, want the source's backing claim sw-%s", ds, e.uid)
	}

	plain := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "rwo"}, Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("local-rwo")}}
	bad := clone.DeepCopy()
	bad.Name, bad.UID, bad.ResourceVersion = "bad", "bad00000-0000-4000-8000-000000000002", ""
	bad.Spec.DataSource.Name = "rwo"
	for _, obj := range []client.Object{plain, bad} {
		if err := e.c.Create(context.Background(), obj); err != nil {
			t.Fatal(err)
		}
	}
	e.req.Name = "bad"
	e.reconcile()
	sv := &swv1.SharedVolume{}
	e.get(sv, "app", "bad")
	if sv.Status.Phase != swv1.PhaseFailed || readyReason(sv.Status) != ReasonBadDataSource {
		t.Errorf("clone of an RWO claim: phase %s reason %s", sv.Status.Phase, readyReason(sv.Status))
	}
	if e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(string(bad.UID))) {
		t.Error("backing claim created for an unreachable data source")
	}
}

// TestNoAttachmentOnAFencedNode: a fencing cut short after the release leaves the backing disk
// attached to the dead node; the volume's own reconcile removes that attachment, and only it.
func TestNoAttachmentOnAFencedNode(t *testing.T) {
	e := newEnv(t)
	e.provisionToReady()
	ctx := context.Background()
	backing := &corev1.PersistentVolumeClaim{}
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	backing.Spec.VolumeName = "disk-1"
	if err := e.c.Update(ctx, backing); err != nil {
		t.Fatal(err)
	}
	sv := e.sv()
	sv.Status.FencedNodes = []string{"dead"}
	if err := e.c.Status().Update(ctx, sv); err != nil {
		t.Fatal(err)
	}
	va := func(name, node, pv string) *storagev1.VolumeAttachment {
		return &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: storagev1.VolumeAttachmentSpec{
			Attacher: "disk.example.com", NodeName: node, Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(pv)}}}
	}
	for _, v := range []*storagev1.VolumeAttachment{va("on-dead", "dead", "disk-1"), va("on-alive", "node-a1", "disk-1"), va("other-disk", "dead", "disk-2")} {
		if err := e.c.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	e.reconcile()
	for name, want := range map[string]bool{"on-dead": false, "on-alive": true, "other-disk": true} {
		if got := e.get(&storagev1.VolumeAttachment{}, "", name); got != want {
			t.Errorf("attachment %s there: %v, want %v", name, got, want)
		}
	}
}
