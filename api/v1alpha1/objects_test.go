package v1alpha1

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestPodClaimNames(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared"}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
	}}}
	if got, want := PodClaimNames(pod), []string{"shared", "web-scratch"}; !slices.Equal(got, want) {
		t.Errorf("PodClaimNames = %v, want %v", got, want)
	}
}

// The per-volume objects' name is part of the contract with running servers and the fencer:
// it must not change between releases, and it must stay a valid DNS label.
func TestObjectName(t *testing.T) {
	uid := "0f8a7c1e-e2e0-4000-8000-000000000001"
	if got, want := ObjectName(uid), "sw-0f8a7c1e-e2e0-4000-8000-000000000001"; got != want {
		t.Errorf("ObjectName(%q) = %q, want %q", uid, got, want)
	}
	if errs := validation.IsDNS1123Label(ObjectName(uid)); len(errs) > 0 {
		t.Errorf("ObjectName(%q) is not a DNS label: %v", uid, errs)
	}
}
