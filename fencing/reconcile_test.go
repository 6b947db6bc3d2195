package fencing

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

var (
	leaseKey = types.NamespacedName{Namespace: "sw", Name: "sw-vol"}
	t0       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	errAPI   = errors.New("apiserver unavailable")
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := swv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// fencingWorld is a server that stopped renewing its lease on node "dead", with its backing
// volume attached there.
func fencingWorld() []client.Object {
	return []client.Object{
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("sw-vol_u-1"), LeaseDurationSeconds: ptr.To[int32](10)}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol", UID: "u-1", Labels: map[string]string{
			swv1.LabelClaimNamespace: "team", swv1.LabelClaimName: "data", swv1.LabelClaimUID: "c-1"}}, Spec: corev1.PodSpec{NodeName: "dead"}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1"}},
		&storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-1"}, Spec: storagev1.VolumeAttachmentSpec{
			NodeName: "dead", Attacher: "disk.example.com", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pv-1")}}},
	}
}

// fencerAt returns a Fencer over c whose clock the test moves, having seen the lease once.
func fencerAt(t *testing.T, c client.Client) (*Fencer, *time.Time, *[]Step, *events.FakeRecorder) {
	t.Helper()
	now := t0
	var steps []Step
	rec := events.NewFakeRecorder(10)
	f := &Fencer{Client: c, Recorder: rec, Config: FencerConfig{Margin: 2 * time.Second}, Now: func() time.Time { return now },
		OnStep: func(_ context.Context, s Step, _ types.NamespacedName) { steps = append(steps, s) }}
	res, err := f.Reconcile(context.Background(), ctrl.Request{NamespacedName: leaseKey})
	if err != nil || res.RequeueAfter != 12*time.Second {
		t.Fatalf("first look: %+v, %v; want a wait of duration plus margin", res, err)
	}
	return f, &now, &steps, rec
}

func TestFencerFencesAStoppedHolder(t *testing.T) {
	c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(fencingWorld()...).Build()
	f, now, steps, rec := fencerAt(t, c)
	*now = now.Add(12 * time.Second)
	if _, err := f.Reconcile(context.Background(), ctrl.Request{NamespacedName: leaseKey}); err != nil {
		t.Fatal(err)
	}
	l := &coordinationv1.Lease{}
	if err := c.Get(context.Background(), leaseKey, l); err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil || l.Annotations[swv1.AnnotationFencedHolder] != "sw-vol_u-1" || l.Annotations[swv1.AnnotationFencedNode] != "dead" {
		t.Errorf("lease not released to the fencing: %+v", l)
	}
	if err := c.Get(context.Background(), leaseKey, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("old server pod still there: %v", err)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Name: "va-1"}, &storagev1.VolumeAttachment{}); !apierrors.IsNotFound(err) {
		t.Errorf("attachment on the dead node still there: %v", err)
	}
	if want := []Step{StepLeaseReleased, StepPodDeleted, StepDetached}; !slices.Equal(*steps, want) {
		t.Errorf("steps %v, want %v", *steps, want)
	}
	if n := len(rec.Events); n != 2 { // on the claim and on the node
		t.Errorf("%d events, want 2", n)
	}
}

// A renewal that raced the release wins: the update conflicts and nothing is removed.
func TestFencerLeavesALeaseRenewedMeanwhile(t *testing.T) {
	c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(fencingWorld()...).WithInterceptorFuncs(interceptor.Funcs{
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, obj.GetName(), errors.New("renewed"))
		},
	}).Build()
	f, now, steps, _ := fencerAt(t, c)
	*now = now.Add(time.Minute)
	res, err := f.Reconcile(context.Background(), ctrl.Request{NamespacedName: leaseKey})
	//lint:ignore SA1019 fence asks for a plain requeue on a conflict (see fencer.go)
	if err != nil || !res.Requeue {
		t.Fatalf("got %+v, %v; want a requeue", res, err)
	}
	if err := c.Get(context.Background(), leaseKey, &corev1.Pod{}); err != nil || len(*steps) != 0 {
		t.Errorf("pod gone (%v) or steps taken (%v) for a live holder", err, *steps)
	}
}

// Every failed API call ends the fencing with an error (retried by the workqueue), and the
// steps before it stay done.
func TestFencerReportsAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		funcs     interceptor.Funcs
		wantErr   string
		wantSteps []Step
		wantEvent string
	}{
		{name: "reading the server pod", wantErr: "getting server pod", funcs: interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if _, ok := obj.(*corev1.Pod); ok {
					return errAPI
				}
				return c.Get(ctx, key, obj, opts...)
			}}},
		{name: "releasing the lease", wantErr: "releasing lease", funcs: interceptor.Funcs{
			Update: func(context.Context, client.WithWatch, client.Object, ...client.UpdateOption) error { return errAPI }}},
		{name: "force-deleting the pod", wantErr: "force-deleting server pod", wantSteps: []Step{StepLeaseReleased}, wantEvent: ReasonFenceFailed,
			funcs: interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if _, ok := obj.(*corev1.Pod); ok {
					return errAPI
				}
				return c.Delete(ctx, obj, opts...)
			}}},
		{name: "listing attachments", wantErr: "listing volume attachments", wantSteps: []Step{StepLeaseReleased, StepPodDeleted},
			funcs: interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error { return errAPI }}},
		{name: "deleting an attachment", wantErr: "deleting volume attachment va-1", wantSteps: []Step{StepLeaseReleased, StepPodDeleted},
			funcs: interceptor.Funcs{Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if _, ok := obj.(*storagev1.VolumeAttachment); ok {
					return errAPI
				}
				return c.Delete(ctx, obj, opts...)
			}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(fencingWorld()...).WithInterceptorFuncs(tc.funcs).Build()
			now := t0
			var steps []Step
			rec := events.NewFakeRecorder(10)
			f := &Fencer{Client: c, Recorder: rec, Now: func() time.Time { return now },
				OnStep: func(_ context.Context, s Step, _ types.NamespacedName) { steps = append(steps, s) }}
			l := &coordinationv1.Lease{}
			if err := c.Get(context.Background(), leaseKey, l); err != nil {
				t.Fatal(err)
			}
			_, err := f.fence(context.Background(), l, "sw-vol_u-1")
			if !errors.Is(err, errAPI) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q wrapping the API's", err, tc.wantErr)
			}
			if !slices.Equal(steps, tc.wantSteps) {
				t.Errorf("steps %v, want %v", steps, tc.wantSteps)
			}
			if tc.wantEvent != "" && (len(rec.Events) != 1 || !strings.Contains(<-rec.Events, tc.wantEvent)) {
				t.Errorf("no %s event", tc.wantEvent)
			}
		})
	}
}

func TestDetachOnlyTheBackingVolumeOnTheNode(t *testing.T) {
	objs := append(fencingWorld(),
		&storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-elsewhere"}, Spec: storagev1.VolumeAttachmentSpec{
			NodeName: "alive", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pv-1")}}},
		&storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-other-volume"}, Spec: storagev1.VolumeAttachmentSpec{
			NodeName: "dead", Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pv-2")}}})
	c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).Build()
	f := &Fencer{Client: c}
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-vol"}}
	for _, tc := range []struct {
		node string
		want int
	}{{"", 0}, {"dead", 1}, {"dead", 0}} {
		if n, err := f.detach(context.Background(), l, tc.node); err != nil || n != tc.want {
			t.Errorf("detach(%q) = %d, %v; want %d", tc.node, n, err, tc.want)
		}
	}
	for _, kept := range []string{"va-elsewhere", "va-other-volume"} {
		if err := c.Get(context.Background(), client.ObjectKey{Name: kept}, &storagev1.VolumeAttachment{}); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
	// No backing claim (a released volume): nothing to detach, no error.
	if n, err := f.detach(context.Background(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "gone"}}, "dead"); err != nil || n != 0 {
		t.Errorf("detach without a backing claim = %d, %v", n, err)
	}
}

func nodeFencerWorld(ready corev1.ConditionStatus, since time.Time) []client.Object {
	return []client.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "dead"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: ready, LastTransitionTime: metav1.NewTime(since)}}}},
		&swv1.SharedVolume{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "data"}, Spec: swv1.SharedVolumeSpec{ClaimName: "web-scratch"},
			Status: swv1.SharedVolumeStatus{FencedNodes: []string{"dead"}}},
		// A consumer of the volume through a generic ephemeral volume, and a bystander.
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", UID: "w"}, Spec: corev1.PodSpec{NodeName: "dead", Volumes: []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "other", UID: "o"}, Spec: corev1.PodSpec{NodeName: "dead"}},
	}
}

func TestNodeFencerFencesAndUnfences(t *testing.T) {
	c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(nodeFencerWorld(corev1.ConditionUnknown, t0)...).
		WithIndex(&corev1.Pod{}, IndexPodNode, podNode).Build()
	now := t0.Add(time.Minute)
	rec := events.NewFakeRecorder(10)
	n := &NodeFencer{Client: c, Recorder: rec, Now: func() time.Time { return now },
		Config: NodeFencerConfig{Settle: time.Minute, EvictConsumers: true, OutOfService: true}}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Name: "dead"}}
	if _, err := n.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{}
	if err := c.Get(context.Background(), req.NamespacedName, node); err != nil {
		t.Fatal(err)
	}
	if node.Labels[swv1.LabelNodeFenced] != swv1.FencedTrue || len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != corev1.TaintNodeOutOfService {
		t.Errorf("node not fenced: labels %v taints %v", node.Labels, node.Spec.Taints)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "web"}, &corev1.Pod{}); !apierrors.IsNotFound(err) {
		t.Errorf("consumer through an ephemeral volume not evicted: %v", err)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "other"}, &corev1.Pod{}); err != nil {
		t.Errorf("bystander evicted: %v", err)
	}

	// Ready again, but not for the settle period yet: wait; then unfence.
	node.Status.Conditions[0] = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now)}
	if err := c.Status().Update(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	if res, err := n.Reconcile(context.Background(), req); err != nil || res.RequeueAfter != time.Minute {
		t.Fatalf("got %+v, %v; want a wait of the settle period", res, err)
	}
	now = now.Add(time.Minute)
	if _, err := n.Reconcile(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), req.NamespacedName, node); err != nil {
		t.Fatal(err)
	}
	if _, fenced := node.Labels[swv1.LabelNodeFenced]; fenced || len(node.Spec.Taints) != 0 {
		t.Errorf("node not unfenced: labels %v taints %v", node.Labels, node.Spec.Taints)
	}
}

func TestNodeFencerReportsAPIErrors(t *testing.T) {
	fail := func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
		return errAPI
	}
	failList := func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error { return errAPI }
	for _, tc := range []struct {
		name    string
		ready   corev1.ConditionStatus
		funcs   interceptor.Funcs
		wantErr string
	}{
		{"listing volumes", corev1.ConditionFalse, interceptor.Funcs{List: failList}, "listing shared volumes"},
		{"fencing the node", corev1.ConditionFalse, interceptor.Funcs{Patch: fail}, "fencing node"},
		{"unfencing the node", corev1.ConditionTrue, interceptor.Funcs{Patch: fail}, "unfencing node"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := nodeFencerWorld(tc.ready, t0)
			if tc.ready == corev1.ConditionTrue {
				objs[0].SetLabels(map[string]string{swv1.LabelNodeFenced: swv1.FencedTrue})
			}
			c := crfake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...).
				WithIndex(&corev1.Pod{}, IndexPodNode, podNode).WithInterceptorFuncs(tc.funcs).Build()
			n := &NodeFencer{Client: c, Now: func() time.Time { return t0.Add(time.Hour) }, Config: NodeFencerConfig{Settle: time.Minute}}
			_, err := n.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "dead"}})
			if !errors.Is(err, errAPI) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want %q wrapping the API's", err, tc.wantErr)
			}
		})
	}
}
