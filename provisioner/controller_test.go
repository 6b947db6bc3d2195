package provisioner

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/event"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestLeaseChangedIgnoresRenewals(t *testing.T) {
	l := func(holder string, renew int64, fenced string) *coordinationv1.Lease {
		x := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: ptr.To(metav1.NewMicroTime(metav1.Unix(renew, 0).Time))}}
		if holder != "" {
			x.Spec.HolderIdentity = ptr.To(holder)
		}
		if fenced != "" {
			x.Annotations = map[string]string{swv1.AnnotationFencedHolder: fenced}
		}
		return x
	}
	p := leaseChanged()
	for _, tc := range []struct {
		name     string
		old, new *coordinationv1.Lease
		want     bool
	}{
		{"renewal", l("a", 1, ""), l("a", 3, ""), false},
		{"new holder", l("a", 1, ""), l("b", 3, ""), true},
		{"fenced", l("a", 1, ""), l("", 1, "a"), true},
		{"released after a clean stop", l("a", 1, ""), l("", 1, ""), true},
	} {
		if got := p.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestViewChangedIgnoresStatusWrites(t *testing.T) {
	base := func() *swv1.SharedVolume {
		return &swv1.SharedVolume{
			ObjectMeta: metav1.ObjectMeta{Name: "v", Namespace: "ns", Generation: 1, ResourceVersion: "10",
				Labels: map[string]string{"a": "1"}, Annotations: map[string]string{"b": "2"}, Finalizers: []string{swv1.Finalizer}},
			Status: swv1.SharedVolumeStatus{Phase: swv1.PhasePending},
		}
	}
	p := viewChanged()
	for _, tc := range []struct {
		name   string
		change func(*swv1.SharedVolume)
		want   bool
	}{
		{"status written", func(sv *swv1.SharedVolume) { sv.Status.Phase = swv1.PhaseReady; sv.ResourceVersion = "11" }, false},
		{"nothing but the resource version", func(sv *swv1.SharedVolume) { sv.ResourceVersion = "11" }, false},
		{"spec changed", func(sv *swv1.SharedVolume) { sv.Generation = 2 }, true},
		{"label changed", func(sv *swv1.SharedVolume) { sv.Labels["a"] = "3" }, true},
		{"annotation added", func(sv *swv1.SharedVolume) { sv.Annotations["c"] = "4" }, true},
		{"finalizer removed", func(sv *swv1.SharedVolume) { sv.Finalizers = nil }, true},
		{"owner set", func(sv *swv1.SharedVolume) {
			sv.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "PersistentVolumeClaim", Name: "c", UID: "u"}}
		}, true},
		{"deletion marked", func(sv *swv1.SharedVolume) { sv.DeletionTimestamp = ptr.To(metav1.Now()) }, true},
	} {
		old, cur := base(), base()
		tc.change(cur)
		if got := p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: cur}); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if !p.Create(event.CreateEvent{Object: base()}) || !p.Delete(event.DeleteEvent{Object: base()}) {
		t.Error("creations and deletions must pass")
	}
}

func TestSlimPod(t *testing.T) {
	pod := func(labels map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: labels,
				Annotations:   map[string]string{AnnotationServerSpecHash: "h1", "big": "x"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
			Spec: corev1.PodSpec{NodeName: "n1",
				Containers: []corev1.Container{{Name: "c", Image: "img", Args: []string{"serve"}}},
				Volumes: []corev1.Volume{
					{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "claim"}}},
					{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1",
				Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Ready: true}}},
		}
	}
	server := map[string]string{swv1.LabelManagedBy: swv1.ManagedByController}
	for _, tc := range []struct {
		name            string
		labels          map[string]string
		wantAnnotations bool
		wantConditions  bool
	}{
		{"server pod", server, true, true},
		{"consumer pod", map[string]string{"app": "web"}, false, false},
	} {
		out, err := slimPod(pod(tc.labels))
		if err != nil {
			t.Fatal(err)
		}
		got := out.(*corev1.Pod)
		if got.Name != "p" || got.Namespace != "ns" || got.Spec.NodeName != "n1" || got.Status.Phase != corev1.PodRunning {
			t.Errorf("%s: lost identity, node or phase: %+v", tc.name, got)
		}
		if got.ManagedFields != nil || got.Spec.Containers != nil || got.Status.ContainerStatuses != nil || got.Status.PodIP != "" {
			t.Errorf("%s: kept what the controller never reads: %+v", tc.name, got)
		}
		if names := swv1.PodClaimNames(got); len(names) != 1 || names[0] != "claim" {
			t.Errorf("%s: claim volumes %v, want [claim]", tc.name, names)
		}
		if has := got.Annotations[AnnotationServerSpecHash] == "h1"; has != tc.wantAnnotations {
			t.Errorf("%s: spec hash annotation kept %v, want %v", tc.name, has, tc.wantAnnotations)
		}
		if has := len(got.Status.Conditions) == 1; has != tc.wantConditions {
			t.Errorf("%s: conditions kept %v, want %v", tc.name, has, tc.wantConditions)
		}
	}
	if out, err := slimPod("not a pod"); err != nil || out != "not a pod" {
		t.Errorf("a non-pod: %v %v", out, err)
	}
}

func TestOptionsLeaderElectionTimings(t *testing.T) {
	for _, tc := range []struct {
		name                string
		lease, renew, retry time.Duration
		want                string // "" accepts
	}{
		{"defaults", 15 * time.Second, 10 * time.Second, 2 * time.Second, ""},
		{"raised for a loaded plane", 60 * time.Second, 40 * time.Second, 5 * time.Second, ""},
		{"lease equal to renew deadline", 10 * time.Second, 10 * time.Second, 2 * time.Second, "--leader-elect-lease-duration"},
		{"lease below renew deadline", 5 * time.Second, 10 * time.Second, 2 * time.Second, "--leader-elect-lease-duration"},
		{"renew deadline within the retry jitter", 15 * time.Second, 2400 * time.Millisecond, 2 * time.Second, "--leader-elect-renew-deadline"},
		{"zero retry period", 15 * time.Second, 10 * time.Second, 0, "--leader-elect-retry-period"},
		{"negative retry period", 15 * time.Second, 10 * time.Second, -time.Second, "--leader-elect-retry-period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = tc.lease, tc.renew, tc.retry
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestOptionsLeaderElectionFlags(t *testing.T) {
	o := NewOptions()
	fs := pflag.NewFlagSet("controller", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--leader-elect-lease-duration=60s", "--leader-elect-renew-deadline=40s", "--leader-elect-retry-period=5s"}); err != nil {
		t.Fatal(err)
	}
	if o.LeaseDuration != time.Minute || o.RenewDeadline != 40*time.Second || o.RetryPeriod != 5*time.Second {
		t.Fatalf("parsed %s/%s/%s, want 1m0s/40s/5s", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}
