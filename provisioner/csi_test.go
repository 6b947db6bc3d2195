package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
	"github.com/sharewarden/sharewarden/fencing"
)

const gi = int64(1) << 30

// wantCode fails unless err is a gRPC status of code whose message contains every substring.
func wantCode(t *testing.T, err error, code codes.Code, substrings ...string) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code %s, want %s (error: %v)", got, code, err)
	}
	for _, s := range substrings {
		if !strings.Contains(status.Convert(err).Message(), s) {
			t.Errorf("message %q does not say %q", status.Convert(err).Message(), s)
		}
	}
}

func mountCapability(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func TestParseCreateVolume(t *testing.T) {
	valid := func() *csi.CreateVolumeRequest {
		return &csi.CreateVolumeRequest{
			Name:               "pvc-1",
			CapacityRange:      &csi.CapacityRange{RequiredBytes: 5 * gi, LimitBytes: 10 * gi},
			VolumeCapabilities: []*csi.VolumeCapability{mountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
			Parameters:         map[string]string{ParamClaimNamespace: "app", ParamClaimName: "data"},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(r *csi.CreateVolumeRequest)
		want   string // a substring of the InvalidArgument message; "" for valid
	}{
		{name: "valid", change: func(*csi.CreateVolumeRequest) {}},
		{name: "no capacity range", change: func(r *csi.CreateVolumeRequest) { r.CapacityRange = nil }},
		{name: "no limit", change: func(r *csi.CreateVolumeRequest) { r.CapacityRange.LimitBytes = 0 }},
		{name: "empty name", change: func(r *csi.CreateVolumeRequest) { r.Name = "" }, want: "name is empty"},
		{name: "no capabilities", change: func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = nil }, want: "volume_capabilities is empty"},
		{name: "block capability", change: func(r *csi.CreateVolumeRequest) {
			r.VolumeCapabilities = append(r.VolumeCapabilities, &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
			})
		}, want: "block access is not supported"},
		{name: "no access type", change: func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities[0].AccessType = nil }, want: "no access type"},
		{name: "missing access mode", change: func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities[0].AccessMode = nil }, want: "no access mode"},
		{name: "unknown access mode", change: func(r *csi.CreateVolumeRequest) {
			r.VolumeCapabilities[0].AccessMode.Mode = csi.VolumeCapability_AccessMode_UNKNOWN
		}, want: "no access mode"},
		{name: "negative required", change: func(r *csi.CreateVolumeRequest) { r.CapacityRange.RequiredBytes = -1 }, want: "capacity_range"},
		{name: "negative limit", change: func(r *csi.CreateVolumeRequest) { r.CapacityRange.LimitBytes = -1 }, want: "capacity_range"},
		{name: "inverted range", change: func(r *csi.CreateVolumeRequest) {
			r.CapacityRange = &csi.CapacityRange{RequiredBytes: 10 * gi, LimitBytes: 5 * gi}
		}, want: "want 0 <= required <= limit"},
		{name: "no parameters", change: func(r *csi.CreateVolumeRequest) { r.Parameters = nil }, want: "--extra-create-metadata"},
		{name: "no claim namespace", change: func(r *csi.CreateVolumeRequest) { delete(r.Parameters, ParamClaimNamespace) }, want: ParamClaimNamespace},
		{name: "no claim name", change: func(r *csi.CreateVolumeRequest) { delete(r.Parameters, ParamClaimName) }, want: ParamClaimName},
		{name: "every problem of the request told at once", change: func(r *csi.CreateVolumeRequest) { r.Name, r.VolumeCapabilities = "", nil }, want: "name is empty; volume_capabilities is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := valid()
			tc.change(req)
			in, err := parseCreateVolume(req)
			if err == nil {
				err = checkClaimParams(in) // checked after the content source, in CreateVolume
			}
			if tc.want != "" {
				wantCode(t, err, codes.InvalidArgument, tc.want)
				return
			}
			if err != nil {
				t.Fatalf("valid request refused: %v", err)
			}
			if in.name != req.Name || in.claim != (types.NamespacedName{Namespace: "app", Name: "data"}) ||
				in.required != req.GetCapacityRange().GetRequiredBytes() || in.limit != req.GetCapacityRange().GetLimitBytes() {
				t.Errorf("parsed %+v from %v", in, req)
			}
		})
	}
}

func TestCheckCapacity(t *testing.T) {
	for _, tc := range []struct {
		required, limit, have int64
		ok                    bool
	}{
		{required: 5, limit: 10, have: 7, ok: true},
		{required: 5, limit: 10, have: 5, ok: true},
		{required: 5, limit: 10, have: 10, ok: true},
		{required: 5, limit: 10, have: 4},
		{required: 5, limit: 10, have: 11},
		{required: 5, limit: 0, have: 1 << 50, ok: true}, // limit 0: no limit
		{required: 0, limit: 0, have: 0, ok: true},
		{required: 5, limit: 0, have: 4},
	} {
		err := checkCapacity(tc.required, tc.limit, tc.have)
		if tc.ok {
			if err != nil {
				t.Errorf("checkCapacity(%d, %d, %d): %v", tc.required, tc.limit, tc.have, err)
			}
			continue
		}
		if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), "outside the requested range") {
			t.Errorf("checkCapacity(%d, %d, %d) = %v, want AlreadyExists", tc.required, tc.limit, tc.have, err)
		}
	}
}

func TestServable(t *testing.T) {
	conds := func(backing, server bool) []metav1.Condition {
		s := map[bool]metav1.ConditionStatus{true: metav1.ConditionTrue, false: metav1.ConditionFalse}
		return []metav1.Condition{
			{Type: swv1.ConditionBackingBound, Status: s[backing]},
			{Type: swv1.ConditionServerReady, Status: s[server]},
		}
	}
	for _, tc := range []struct {
		name string
		st   swv1.SharedVolumeStatus
		want bool
	}{
		{"provisioning, bound and ready", swv1.SharedVolumeStatus{Phase: swv1.PhaseProvisioning, ServiceIP: testServiceIP, Conditions: conds(true, true)}, true},
		{"ready", swv1.SharedVolumeStatus{Phase: swv1.PhaseReady, ServiceIP: testServiceIP, Conditions: conds(true, true)}, true},
		{"pending", swv1.SharedVolumeStatus{Phase: swv1.PhasePending, ServiceIP: testServiceIP, Conditions: conds(true, true)}, false},
		{"failed", swv1.SharedVolumeStatus{Phase: swv1.PhaseFailed, ServiceIP: testServiceIP, Conditions: conds(true, true)}, false},
		{"failing over", swv1.SharedVolumeStatus{Phase: swv1.PhaseFailingOver, ServiceIP: testServiceIP, Conditions: conds(true, true)}, false},
		{"fenced", swv1.SharedVolumeStatus{Phase: swv1.PhaseFenced, ServiceIP: testServiceIP, Conditions: conds(true, true)}, false},
		{"deleting", swv1.SharedVolumeStatus{Phase: swv1.PhaseDeleting, ServiceIP: testServiceIP, Conditions: conds(true, true)}, false},
		{"no phase", swv1.SharedVolumeStatus{ServiceIP: testServiceIP, Conditions: conds(true, true)}, false},
		{"no service IP", swv1.SharedVolumeStatus{Phase: swv1.PhaseProvisioning, Conditions: conds(true, true)}, false},
		{"backing not bound", swv1.SharedVolumeStatus{Phase: swv1.PhaseProvisioning, ServiceIP: testServiceIP, Conditions: conds(false, true)}, false},
		{"server not ready", swv1.SharedVolumeStatus{Phase: swv1.PhaseProvisioning, ServiceIP: testServiceIP, Conditions: conds(true, false)}, false},
		{"no conditions", swv1.SharedVolumeStatus{Phase: swv1.PhaseReady, ServiceIP: testServiceIP}, false},
	} {
		if got := Servable(tc.st); got != tc.want {
			t.Errorf("%s: Servable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestVolumeUID(t *testing.T) {
	for _, tc := range []struct {
		id, uid string
		ok      bool
	}{
		{"pvc-0b9f6f43-5d0c-4a55-9d2c-3b1c1f7e7a01", "0b9f6f43-5d0c-4a55-9d2c-3b1c1f7e7a01", true},
		{"pvc-x", "x", true},
		{"pvc-", "", false},
		{"", "", false},
		{"0b9f6f43", "", false},
		{"vol-0b9f6f43", "", false},
		{"pvc-a/b", "", false},
		{"pvc-a b", "", false},
	} {
		uid, ok := volumeUID(tc.id)
		if ok != tc.ok || (ok && uid != tc.uid) {
			t.Errorf("volumeUID(%q) = %q, %v; want %q, %v", tc.id, uid, ok, tc.uid, tc.ok)
		}
	}
}

func TestControllerGetCapabilities(t *testing.T) {
	resp, err := (&CSIController{}).ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[csi.ControllerServiceCapability_RPC_Type]bool{}
	for _, c := range resp.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	} {
		if !got[want] {
			t.Errorf("capability %s missing", want)
		}
	}
}

// newCSIEnv is newEnv with the managed class served by ShareWarden's CSI driver.
func newCSIEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	e := newEnv(t, objs...)
	sc := &storagev1.StorageClass{}
	e.get(sc, "", "sharewarden-nfs")
	sc.Provisioner = swv1.CSIDriverName
	if err := e.c.Update(context.Background(), sc); err != nil {
		t.Fatal(err)
	}
	return e
}

// serveCSI drives a CSI volume through the fake API until its server is Ready, playing the
// other controllers' parts (ClusterIP allocation, backing binding, kubelet readiness). No PV
// exists then: external-provisioner makes it from CreateVolume's answer.
func (e *env) serveCSI() {
	e.t.Helper()
	ctx := context.Background()
	e.reconcile()
	name := swv1.ObjectName(e.uid)
	svc, backing, pod := &corev1.Service{}, &corev1.PersistentVolumeClaim{}, &corev1.Pod{}
	if !e.get(svc, sysNS, name) || !e.get(backing, sysNS, name) || !e.get(pod, sysNS, name) {
		e.t.Fatal("first pass must create backing claim, service and server pod")
	}
	svc.Spec.ClusterIP = testServiceIP
	if err := e.c.Update(ctx, svc); err != nil {
		e.t.Fatal(err)
	}
	backing.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}}
	if err := e.c.Status().Update(ctx, backing); err != nil {
		e.t.Fatal(err)
	}
	pod.Spec.NodeName = "node-a1"
	if err := e.c.Update(ctx, pod); err != nil {
		e.t.Fatal(err)
	}
	e.runServer()
	e.reconcile()
	if e.get(&corev1.PersistentVolume{}, "", PVName(e.uid)) {
		e.t.Fatal("the controller made the PV of a CSI volume: external-provisioner makes it")
	}
	if sv := e.sv(); !Servable(sv.Status) || sv.Status.Phase != swv1.PhaseProvisioning {
		e.t.Fatalf("want a servable Provisioning volume, got %+v", sv.Status)
	}
}

// bindCSIPV plays external-provisioner and the PV controller: a CSI PV made from CreateVolume's
// answer, without any ShareWarden label, and the claim bound to it.
func (e *env) bindCSIPV(vol *csi.Volume, policy corev1.PersistentVolumeReclaimPolicy) {
	e.t.Helper()
	ctx := context.Background()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: vol.GetVolumeId()},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(vol.GetCapacityBytes(), resource.BinarySI)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: policy,
			StorageClassName:              "sharewarden-nfs",
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "app", Name: "data", UID: types.UID(e.uid)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: swv1.CSIDriverName, VolumeHandle: vol.GetVolumeId(), VolumeAttributes: vol.GetVolumeContext(),
			}},
		},
	}
	if err := e.c.Create(ctx, pv); err != nil {
		e.t.Fatal(err)
	}
	claim := &corev1.PersistentVolumeClaim{}
	e.get(claim, "app", "data")
	claim.Spec.VolumeName = pv.Name
	if err := e.c.Update(ctx, claim); err != nil {
		e.t.Fatal(err)
	}
	claim.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: pv.Spec.Capacity}
	if err := e.c.Status().Update(ctx, claim); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) controller() *CSIController {
	return &CSIController{Reconciler: e.r, Poll: 10 * time.Millisecond}
}

func (e *env) createRequest() *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{
		Name:               PVName(e.uid),
		CapacityRange:      &csi.CapacityRange{RequiredBytes: 5 * gi},
		VolumeCapabilities: []*csi.VolumeCapability{mountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
		Parameters:         map[string]string{ParamClaimNamespace: "app", ParamClaimName: "data"},
	}
}

// timeout is a context for a call expected to return: generous, so that a slow machine never
// fails a test; only a call that hangs hits it.
func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// backingSnapshotOf is a backing snapshot the controller made of the volume of claim uid.
func backingSnapshotOf(name, uid, backingClass string) *snapshotv1.VolumeSnapshot {
	return &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: name,
			Labels:      map[string]string{swv1.LabelManagedBy: swv1.ManagedByController, swv1.LabelClaimUID: uid},
			Annotations: map[string]string{swv1.AnnotationBackingStorageClass: backingClass}},
		Spec: snapshotv1.VolumeSnapshotSpec{Source: snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(swv1.ObjectName(uid))}},
	}
}

func TestCreateVolume(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	req := e.createRequest()
	resp, err := e.controller().CreateVolume(timeout(t), req)
	if err != nil {
		t.Fatal(err)
	}
	vol := resp.GetVolume()
	if vol.GetVolumeId() != PVName(e.uid) || vol.GetCapacityBytes() != 5*gi {
		t.Errorf("volume %s of %d bytes, want %s of %d", vol.GetVolumeId(), vol.GetCapacityBytes(), PVName(e.uid), 5*gi)
	}
	if ctx := vol.GetVolumeContext(); ctx[csidriver.ContextServer] != testServiceIP || ctx[csidriver.ContextShare] != ExportPseudoPath {
		t.Errorf("volume context %v, want server %s and share %s", ctx, testServiceIP, ExportPseudoPath)
	}
	if vol.GetContentSource() != nil {
		t.Errorf("content source %v on an empty volume", vol.GetContentSource())
	}

	// Asked again, the same answer; with a range the volume does not fit, AlreadyExists.
	again, err := e.controller().CreateVolume(timeout(t), req)
	if err != nil || again.GetVolume().GetVolumeContext()[csidriver.ContextServer] != testServiceIP {
		t.Errorf("second call: %v, %v", again, err)
	}
	req.CapacityRange = &csi.CapacityRange{RequiredBytes: 6 * gi}
	_, err = e.controller().CreateVolume(timeout(t), req)
	wantCode(t, err, codes.AlreadyExists, "outside the requested range")

	// A restore of a ShareWarden snapshot: the content source is echoed.
	if err := e.c.Create(context.Background(), backingSnapshotOf("snapshot-1", e.uid, "local-rwo")); err != nil {
		t.Fatal(err)
	}
	req = e.createRequest()
	req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snapshot-1"}}}
	resp, err = e.controller().CreateVolume(timeout(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetVolume().GetContentSource().GetSnapshot().GetSnapshotId(); got != "snapshot-1" {
		t.Errorf("content source %v, want snapshot-1 echoed", resp.GetVolume().GetContentSource())
	}
}

func TestCreateVolumeRefusals(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	c := e.controller()

	req := e.createRequest()
	req.Name = "pvc-00000000-0000-4000-8000-000000000000"
	_, err := c.CreateVolume(timeout(t), req)
	wantCode(t, err, codes.InvalidArgument, PVName(e.uid), "--volume-name-prefix")

	req = e.createRequest()
	req.Parameters[ParamClaimName] = "gone"
	_, err = c.CreateVolume(timeout(t), req)
	wantCode(t, err, codes.FailedPrecondition, "app/gone")

	for _, tc := range []struct {
		name string
		src  *csi.VolumeContentSource
		want string
	}{
		{"missing volume", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "pvc-00000000-0000-4000-8000-000000000000"}}}, "does not exist"},
		{"volume of another driver", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "disk-7"}}}, "not a ShareWarden volume"},
		{"missing snapshot", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "snapshot-missing"}}}, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := e.createRequest()
			req.VolumeContentSource = tc.src
			_, err := c.CreateVolume(timeout(t), req)
			wantCode(t, err, codes.NotFound, tc.want)
		})
	}

	// A VolumeSnapshot of that name that ShareWarden did not make is no ShareWarden snapshot.
	foreign := &snapshotv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: "someones"}}
	if err := e.c.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	req = e.createRequest()
	req.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
		Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "someones"}}}
	_, err = c.CreateVolume(timeout(t), req)
	wantCode(t, err, codes.NotFound, "not made by ShareWarden")
}

func TestCreateVolumeOfAFailedVolume(t *testing.T) {
	uid := string(testVolume().Claim.UID)
	foreign := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: swv1.ObjectName(uid),
		Labels: map[string]string{swv1.LabelClaimUID: uid}}}
	e := newCSIEnv(t, foreign)
	e.reconcile()
	if sv := e.sv(); sv.Status.Phase != swv1.PhaseFailed {
		t.Fatalf("phase %s, want Failed", sv.Status.Phase)
	}
	_, err := e.controller().CreateVolume(timeout(t), e.createRequest())
	wantCode(t, err, codes.FailedPrecondition, ReasonConflict, "Events")
}

func TestCreateVolumeTimesOutWhileNotServable(t *testing.T) {
	e := newCSIEnv(t)
	e.reconcile() // no ClusterIP, backing claim unbound, server not ready
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := e.controller().CreateVolume(ctx, e.createRequest())
	wantCode(t, err, codes.DeadlineExceeded, PVName(e.uid), "Provisioning")

	// Before the reconcile saw the claim, the same: the sidecar calls again.
	e2 := newCSIEnv(t)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = e2.controller().CreateVolume(ctx2, e2.createRequest())
	wantCode(t, err, codes.DeadlineExceeded, "not seen the claim")
}

// TestCreateVolumeWakesOnNotify: a waiting call answers once it is told the volume changed,
// without waiting for its next poll.
func TestCreateVolumeWakesOnNotify(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	// Take the volume out of service, so that the call waits.
	sv := e.sv()
	ready := sv.Status.DeepCopy()
	meta.SetStatusCondition(&sv.Status.Conditions, metav1.Condition{Type: swv1.ConditionServerReady, Status: metav1.ConditionFalse, Reason: "NotReady"})
	if err := e.c.Status().Update(context.Background(), sv); err != nil {
		t.Fatal(err)
	}
	c := &CSIController{Reconciler: e.r, Poll: time.Hour} // only Notify can wake it
	type result struct {
		resp *csi.CreateVolumeResponse
		err  error
	}
	done := make(chan result, 1)
	ctx := timeout(t)
	go func() {
		resp, err := c.CreateVolume(ctx, e.createRequest())
		done <- result{resp, err}
	}()
	for waiting := false; !waiting; {
		select {
		case r := <-done:
			t.Fatalf("returned before the volume was servable: %v, %v", r.resp, r.err)
		case <-time.After(time.Millisecond):
		}
		c.mu.Lock()
		_, waiting = c.waiting[e.uid]
		c.mu.Unlock()
	}
	sv = e.sv()
	sv.Status = *ready
	if err := e.c.Status().Update(context.Background(), sv); err != nil {
		t.Fatal(err)
	}
	c.Notify(e.uid)
	r := <-done
	if r.err != nil {
		t.Fatalf("after Notify: %v", r.err)
	}
	if r.resp.GetVolume().GetVolumeContext()[csidriver.ContextServer] != testServiceIP {
		t.Errorf("volume %v", r.resp.GetVolume())
	}
}

func TestNotifyWakesEveryWaiterOnce(t *testing.T) {
	c := &CSIController{}
	a, b := c.wake("u"), c.wake("u")
	if a != b {
		t.Fatal("two waiters on one volume must share its channel")
	}
	other := c.wake("v")
	c.Notify("u")
	c.Notify("u") // nobody waits any more: no double close
	for _, ch := range []<-chan struct{}{a, b} {
		select {
		case <-ch:
		default:
			t.Error("a waiter was not woken")
		}
	}
	select {
	case <-other:
		t.Error("a waiter on another volume was woken")
	default:
	}
	if c.wake("u") == a {
		t.Error("a new waiter got the closed channel")
	}
}

func TestValidateVolumeCapabilities(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	c := e.controller()
	caps := []*csi.VolumeCapability{mountCapability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}
	resp, err := c.ValidateVolumeCapabilities(timeout(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: PVName(e.uid), VolumeCapabilities: caps})
	if err != nil || resp.GetConfirmed() == nil {
		t.Errorf("mount access not confirmed: %v, %v", resp, err)
	}
	block := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}}
	resp, err = c.ValidateVolumeCapabilities(timeout(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: PVName(e.uid), VolumeCapabilities: block})
	if err != nil || resp.GetConfirmed() != nil || !strings.Contains(resp.GetMessage(), "block") {
		t.Errorf("block access: %v, %v", resp, err)
	}
	_, err = c.ValidateVolumeCapabilities(timeout(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-00000000-0000-4000-8000-000000000000", VolumeCapabilities: caps})
	wantCode(t, err, codes.NotFound)
	_, err = c.ValidateVolumeCapabilities(timeout(t), &csi.ValidateVolumeCapabilitiesRequest{VolumeId: PVName(e.uid)})
	wantCode(t, err, codes.InvalidArgument)
}

func TestDeleteVolumeArguments(t *testing.T) {
	e := newCSIEnv(t)
	_, err := e.controller().DeleteVolume(timeout(t), &csi.DeleteVolumeRequest{})
	wantCode(t, err, codes.InvalidArgument)
	for _, id := range []string{"disk-7", "pvc-", "pvc-a/b"} {
		if _, err := e.controller().DeleteVolume(timeout(t), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Errorf("DeleteVolume(%q), never one of ours: %v", id, err)
		}
	}
	// A volume whose backing claim is gone holds no data: done.
	if _, err := e.controller().DeleteVolume(timeout(t), &csi.DeleteVolumeRequest{VolumeId: PVName(e.uid)}); err != nil {
		t.Errorf("DeleteVolume of a volume never made: %v", err)
	}
}

// TestDeleteVolumeWhileTheClaimExists: external-provisioner never deletes the volume of a live
// claim, whatever the cache says.
func TestDeleteVolumeWhileTheClaimExists(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	resp, err := e.controller().CreateVolume(timeout(t), e.createRequest())
	if err != nil {
		t.Fatal(err)
	}
	e.bindCSIPV(resp.GetVolume(), corev1.PersistentVolumeReclaimDelete)
	e.reconcile()

	check := func(t *testing.T) {
		t.Helper()
		_, err := e.controller().DeleteVolume(timeout(t), &csi.DeleteVolumeRequest{VolumeId: PVName(e.uid)})
		wantCode(t, err, codes.FailedPrecondition, "app/data", "delete the claim")
		name := swv1.ObjectName(e.uid)
		for _, obj := range []client.Object{&corev1.Pod{}, &corev1.Service{}, &corev1.PersistentVolumeClaim{}} {
			if !e.get(obj, sysNS, name) || obj.GetDeletionTimestamp() != nil {
				t.Errorf("%T deleted while the claim exists", obj)
			}
		}
		if sv := e.sv(); sv == nil || sv.Status.Phase != swv1.PhaseReady {
			t.Errorf("volume no longer Ready: %+v", sv)
		}
	}
	t.Run("in the cache", check)
	t.Run("gone from the cache only", func(t *testing.T) {
		claim := &corev1.PersistentVolumeClaim{}
		e.get(claim, "app", "data")
		scheme, _ := Scheme()
		e.r.Reader = fake.NewClientBuilder().WithScheme(scheme).WithObjects(claim.DeepCopy()).Build()
		e.del(claim)
		check(t)
	})
}

func TestDeleteVolumeReleases(t *testing.T) {
	for _, policy := range []corev1.PersistentVolumeReclaimPolicy{corev1.PersistentVolumeReclaimDelete, corev1.PersistentVolumeReclaimRetain} {
		t.Run(string(policy), func(t *testing.T) {
			e := newCSIEnv(t)
			e.serveCSI()
			resp, err := e.controller().CreateVolume(timeout(t), e.createRequest())
			if err != nil {
				t.Fatal(err)
			}
			e.bindCSIPV(resp.GetVolume(), policy)
			e.reconcile()
			ctx := context.Background()
			pod := &corev1.Pod{}
			e.get(pod, sysNS, swv1.ObjectName(e.uid))
			if err := e.c.Create(ctx, fencing.LeaseFor(pod, testVolume().Labels(), time.Minute, e.r.now())); err != nil {
				t.Fatal(err)
			}
			// The user deletes the claim; external-provisioner calls DeleteVolume, perhaps
			// before the reconcile saw it.
			e.del(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}})
			if _, err := e.controller().DeleteVolume(timeout(t), &csi.DeleteVolumeRequest{VolumeId: PVName(e.uid)}); err != nil {
				t.Fatalf("DeleteVolume: %v", err)
			}
			name := swv1.ObjectName(e.uid)
			for _, obj := range []client.Object{&corev1.Pod{}, &corev1.Service{}, &coordinationv1.Lease{}} {
				if e.get(obj, sysNS, name) {
					t.Errorf("%T left behind", obj)
				}
			}
			if e.sv() != nil {
				t.Error("SharedVolume left behind")
			}
			backing := &corev1.PersistentVolumeClaim{}
			kept := e.get(backing, sysNS, name)
			retain := policy == corev1.PersistentVolumeReclaimRetain
			if kept != retain {
				t.Errorf("policy %s: backing claim kept %v", policy, kept)
			}
			if kept && controllerutil.ContainsFinalizer(backing, swv1.FinalizerVolumeProtection) {
				t.Error("a retained backing claim keeps its protection: nobody could delete it")
			}
			if !e.get(&corev1.PersistentVolume{}, "", PVName(e.uid)) {
				t.Error("the controller deleted a CSI PV: external-provisioner deletes it once DeleteVolume returned")
			}
			// Called again (the sidecar retries), and with the reconcile's own pass: all done.
			if _, err := e.controller().DeleteVolume(timeout(t), &csi.DeleteVolumeRequest{VolumeId: PVName(e.uid)}); err != nil {
				t.Errorf("second DeleteVolume: %v", err)
			}
			e.reconcile()
		})
	}
}

func TestReleaseVolume(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	ctx := context.Background()
	if _, err := e.r.ReleaseVolume(ctx, e.uid); !errors.Is(err, ErrClaimExists) {
		t.Errorf("release of a live claim's volume: %v, want ErrClaimExists", err)
	}
	if done, err := e.r.ReleaseVolume(ctx, "00000000-0000-4000-8000-000000000000"); !done || err != nil {
		t.Errorf("release of a volume with no backing claim: %v, %v; want done", done, err)
	}

	// A backing claim without the volume's labels is never released.
	backing := &corev1.PersistentVolumeClaim{}
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	unlabelled := backing.DeepCopy()
	delete(unlabelled.Labels, swv1.LabelClaimName)
	if err := e.c.Update(ctx, unlabelled); err != nil {
		t.Fatal(err)
	}
	if done, err := e.r.ReleaseVolume(ctx, e.uid); done || err == nil || !strings.Contains(err.Error(), "labels") {
		t.Errorf("release through an unlabelled backing claim: %v, %v", done, err)
	}
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	backing.Labels[swv1.LabelClaimName] = "data"
	if err := e.c.Update(ctx, backing); err != nil {
		t.Fatal(err)
	}

	// Claim gone: the server goes first, then the rest, in as many calls as it takes.
	e.del(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data"}})
	done, err := e.r.ReleaseVolume(ctx, e.uid)
	if err != nil || done {
		t.Fatalf("first call: %v, %v; want not done while the server stops", done, err)
	}
	if e.get(&corev1.Pod{}, sysNS, swv1.ObjectName(e.uid)) || e.get(&corev1.Service{}, sysNS, swv1.ObjectName(e.uid)) {
		t.Error("server or Service not deleted first")
	}
	if !e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) {
		t.Error("backing claim deleted before the server was gone")
	}
	if sv := e.sv(); sv == nil || sv.Status.Phase != swv1.PhaseDeleting {
		t.Errorf("SharedVolume while releasing: %+v", sv)
	}
	if done, err = e.r.ReleaseVolume(ctx, e.uid); err != nil || !done {
		t.Fatalf("second call: %v, %v; want done", done, err)
	}
	// No PV was made, and the backing claim records the class's policy, Delete.
	if e.get(&corev1.PersistentVolumeClaim{}, sysNS, swv1.ObjectName(e.uid)) || e.sv() != nil {
		t.Error("backing claim or SharedVolume left behind")
	}
}

func TestControllerExpandVolume(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	c := e.controller()
	id := PVName(e.uid)
	ctx := context.Background()

	for _, req := range []*csi.ControllerExpandVolumeRequest{
		{CapacityRange: &csi.CapacityRange{RequiredBytes: gi}},
		{VolumeId: id},
		{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 10 * gi, LimitBytes: 5 * gi}},
	} {
		_, err := c.ControllerExpandVolume(timeout(t), req)
		wantCode(t, err, codes.InvalidArgument)
	}
	_, err := c.ControllerExpandVolume(timeout(t), &csi.ControllerExpandVolumeRequest{VolumeId: "pvc-00000000-0000-4000-8000-000000000000", CapacityRange: &csi.CapacityRange{RequiredBytes: gi}})
	wantCode(t, err, codes.NotFound)

	// Already that big: the capacity, at once.
	resp, err := c.ControllerExpandVolume(timeout(t), &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 5 * gi}})
	if err != nil || resp.GetCapacityBytes() != 5*gi || resp.GetNodeExpansionRequired() {
		t.Errorf("expansion to the present size: %v, %v", resp, err)
	}

	// Bigger: the backing claim's request grows, and the call waits for its capacity.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	req := &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 10 * gi}}
	_, err = c.ControllerExpandVolume(short, req)
	wantCode(t, err, codes.DeadlineExceeded, "being resized")
	backing := &corev1.PersistentVolumeClaim{}
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	if q := backing.Spec.Resources.Requests[corev1.ResourceStorage]; q.Value() != 10*gi {
		t.Fatalf("backing request %s, want 10Gi", q.String())
	}
	backing.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("10Gi")
	if err := e.c.Status().Update(ctx, backing); err != nil {
		t.Fatal(err)
	}
	resp, err = c.ControllerExpandVolume(timeout(t), req)
	if err != nil || resp.GetCapacityBytes() != 10*gi {
		t.Errorf("once the backing claim grew: %v, %v", resp, err)
	}

	// A backing class that cannot expand: FailedPrecondition, and nothing changes.
	sc := &storagev1.StorageClass{}
	e.get(sc, "", "local-rwo")
	sc.AllowVolumeExpansion = ptr.To(false)
	if err := e.c.Update(ctx, sc); err != nil {
		t.Fatal(err)
	}
	_, err = c.ControllerExpandVolume(timeout(t), &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 20 * gi}})
	wantCode(t, err, codes.FailedPrecondition, "local-rwo", "does not allow volume expansion")
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	if q := backing.Spec.Resources.Requests[corev1.ResourceStorage]; q.Value() != 10*gi {
		t.Errorf("backing request changed to %s on a class without expansion", q.String())
	}
}

// TestCSIVolumePV: the reconcile of a CSI volume never makes its PV, labels the one
// external-provisioner made, keeps the Service at its address, and leaves resizing to
// external-resizer.
func TestCSIVolumePV(t *testing.T) {
	e := newCSIEnv(t)
	e.serveCSI()
	for range 2 {
		e.reconcile()
	}
	if e.get(&corev1.PersistentVolume{}, "", PVName(e.uid)) {
		t.Fatal("the controller made the PV of a CSI volume")
	}
	resp, err := e.controller().CreateVolume(timeout(t), e.createRequest())
	if err != nil {
		t.Fatal(err)
	}
	e.bindCSIPV(resp.GetVolume(), corev1.PersistentVolumeReclaimDelete)
	e.reconcile()
	pv := &corev1.PersistentVolume{}
	e.get(pv, "", PVName(e.uid))
	for k, v := range testVolume().Labels() {
		if pv.Labels[k] != v {
			t.Errorf("CSI PV label %s=%q, want %q", k, pv.Labels[k], v)
		}
	}
	if sv := e.sv(); sv.Status.Phase != swv1.PhaseReady || sv.Status.VolumeName != pv.Name {
		t.Fatalf("want Ready on %s, got %+v", pv.Name, sv.Status)
	}

	// The backing volume grows: the PV and the claim are external-resizer's to update.
	ctx := context.Background()
	backing := &corev1.PersistentVolumeClaim{}
	e.get(backing, sysNS, swv1.ObjectName(e.uid))
	backing.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("10Gi")
	if err := e.c.Status().Update(ctx, backing); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	claim := &corev1.PersistentVolumeClaim{}
	e.get(pv, "", PVName(e.uid))
	e.get(claim, "app", "data")
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.Value() != 5*gi {
		t.Errorf("controller resized a CSI PV to %s", q.String())
	}
	if q := claim.Status.Capacity[corev1.ResourceStorage]; q.Value() != 5*gi {
		t.Errorf("controller reported %s on the claim of a CSI PV", q.String())
	}
	// external-resizer grew the PV and is finishing the claim's resize: the claim's status is
	// its own to write.
	pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("10Gi")
	if err := e.c.Update(ctx, pv); err != nil {
		t.Fatal(err)
	}
	claim.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{corev1.ResourceStorage: corev1.PersistentVolumeClaimControllerResizeInProgress}
	if err := e.c.Status().Update(ctx, claim); err != nil {
		t.Fatal(err)
	}
	e.reconcile()
	e.get(claim, "app", "data")
	if q := claim.Status.Capacity[corev1.ResourceStorage]; q.Value() != 5*gi || claim.Status.AllocatedResourceStatuses == nil {
		t.Errorf("controller wrote the resize of a CSI PV's claim: capacity %s, resize statuses %v", q.String(), claim.Status.AllocatedResourceStatuses)
	}

	// The Service, lost, comes back at the address the CSI PV names.
	e.deleteNow(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: sysNS, Name: swv1.ObjectName(e.uid)}})
	e.reconcile()
	svc := &corev1.Service{}
	if !e.get(svc, sysNS, swv1.ObjectName(e.uid)) || svc.Spec.ClusterIP != testServiceIP {
		t.Errorf("service not recreated at the CSI PV's %s: %+v", testServiceIP, svc.Spec)
	}
}

func TestIsVolumePVAndPVServer(t *testing.T) {
	uid := "u1"
	csiPV := func(driver, handle string) *corev1.PersistentVolume {
		return &corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
			CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: handle, VolumeAttributes: map[string]string{csidriver.ContextServer: "10.0.0.1"}}}}}
	}
	nfsPV := &corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
		NFS: &corev1.NFSVolumeSource{Server: "10.0.0.2", Path: "/export"}}}}
	for _, tc := range []struct {
		name   string
		pv     *corev1.PersistentVolume
		ours   bool
		server string
	}{
		{"ShareWarden CSI PV", csiPV(swv1.CSIDriverName, "pvc-u1"), true, "10.0.0.1"},
		{"of another claim", csiPV(swv1.CSIDriverName, "pvc-u2"), false, "10.0.0.1"},
		{"of another driver", csiPV("disk.example.com", "pvc-u1"), false, "10.0.0.1"},
		{"in-tree NFS PV", nfsPV, false, "10.0.0.2"},
		{"neither", &corev1.PersistentVolume{}, false, ""},
	} {
		if got := isVolumePV(tc.pv, uid); got != tc.ours {
			t.Errorf("%s: isVolumePV = %v, want %v", tc.name, got, tc.ours)
		}
		if got := pvServer(tc.pv); got != tc.server {
			t.Errorf("%s: pvServer = %q, want %q", tc.name, got, tc.server)
		}
	}
}

// eventLog records Events with the object they are about.
type eventLog struct {
	mu     sync.Mutex
	events []loggedEvent
}

type loggedEvent struct {
	regarding            types.NamespacedName
	uid                  types.UID
	typ, reason, message string
}

func (l *eventLog) Eventf(regarding, _ runtime.Object, typ, reason, _, note string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := loggedEvent{typ: typ, reason: reason, message: fmt.Sprintf(note, args...)}
	if o, err := meta.Accessor(regarding); err == nil {
		ev.regarding, ev.uid = types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}, o.GetUID()
	}
	l.events = append(l.events, ev)
}
