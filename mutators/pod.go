package mutators

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// PodFacts is what MutatePod needs to know about the cluster.
type PodFacts struct {
	// ManagedClass names ShareWarden's storage class.
	ManagedClass string
	// DefaultClass names the cluster's default storage class; empty when there is none.
	DefaultClass string
	// SchedulerName, when set, is the second scheduler's profile that places marked pods.
	SchedulerName string
	// ServerSchedulerName, when set, is the profile for NFS server pods instead (one scoring
	// every node, so a server's data nodes are always in its sample); consumers keep
	// SchedulerName (or the default profile), whose adaptive sample sends the extender far fewer
	// names on big clusters.
	ServerSchedulerName string
	// SystemNamespace is ShareWarden's own namespace, where its NFS server pods run.
	SystemNamespace string
	// Claims holds, by name, the existing claims of the pod's namespace that its volumes name.
	Claims map[string]*corev1.PersistentVolumeClaim
	// Classes holds, by name, the storage classes its generic ephemeral volumes ask for.
	Classes map[string]*storagev1.StorageClass
}

// PodResult is what MutatePod decided.
type PodResult struct {
	// Pod is the pod to admit: the input itself when unchanged, a changed copy otherwise.
	Pod     *corev1.Pod
	Changed bool
	Outcome Outcome
}

// DefaultScheduler is the name kube-scheduler answers to, and the apiserver's default.
const DefaultScheduler = corev1.DefaultSchedulerName

var one = resource.MustParse("1")

// MutatePod marks pods the scheduler extender must see: a pod mounting a ShareWarden volume
// (a claim on the managed class, or a generic ephemeral volume whose claim will become one) gets
// ResourceConsumer, an NFS server pod of ShareWarden's own namespace gets ResourceServer, each as
// 1 on its first container; with a second scheduler configured, the pod is handed to it unless
// the user chose a scheduler. A marker set by anyone else is refused.
func MutatePod(pod *corev1.Pod, f PodFacts) (PodResult, error) {
	if pod == nil {
		return PodResult{}, errors.New("no pod to mutate")
	}
	marker, outcome := podRole(pod, f)
	if errs := guardMarkers(pod, marker); len(errs) > 0 {
		return PodResult{}, denied(errs)
	}
	if marker == "" || len(pod.Spec.Containers) == 0 {
		return PodResult{Pod: pod, Outcome: NotConsumer}, nil
	}

	c0 := pod.Spec.Containers[0].Resources
	scheduler := f.SchedulerName
	if marker == v1alpha1.ResourceServer && f.ServerSchedulerName != "" {
		scheduler = f.ServerSchedulerName
	}
	setScheduler := scheduler != "" && (pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == DefaultScheduler) &&
		pod.Spec.SchedulerName != scheduler
	if isOne(c0.Requests, marker) && isOne(c0.Limits, marker) && !setScheduler {
		return PodResult{Pod: pod, Outcome: AlreadyMarked}, nil
	}
	out := pod.DeepCopy()
	r := &out.Spec.Containers[0].Resources
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	if r.Limits == nil {
		r.Limits = corev1.ResourceList{}
	}
	// Extended resources cannot be overcommitted: request and limit must be equal.
	r.Requests[marker] = one.DeepCopy()
	r.Limits[marker] = one.DeepCopy()
	if setScheduler {
		out.Spec.SchedulerName = scheduler
	}
	return PodResult{Pod: out, Changed: true, Outcome: outcome}, nil
}

func isOne(l corev1.ResourceList, name corev1.ResourceName) bool {
	q, ok := l[name]
	return ok && q.Cmp(one) == 0
}

// podRole returns the marker pod should carry, if any.
func podRole(pod *corev1.Pod, f PodFacts) (corev1.ResourceName, Outcome) {
	if f.SystemNamespace != "" && pod.Namespace == f.SystemNamespace &&
		pod.Labels[v1alpha1.LabelComponent] == v1alpha1.ComponentNFSServer {
		return v1alpha1.ResourceServer, MarkedServer
	}
	if MountsManagedVolume(pod, f) {
		return v1alpha1.ResourceConsumer, MarkedConsumer
	}
	return "", NotConsumer
}

// MountsManagedVolume tells whether pod mounts a claim of the managed class, or has a generic
// ephemeral volume whose claim the claim rules will move to it.
func MountsManagedVolume(pod *corev1.Pod, f PodFacts) bool {
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			c := f.Claims[v.PersistentVolumeClaim.ClaimName]
			if c != nil && f.ManagedClass != "" && RequestedClass(c.Spec.StorageClassName, "") == f.ManagedClass {
				return true
			}
		case v.Ephemeral != nil && v.Ephemeral.VolumeClaimTemplate != nil:
			spec := v.Ephemeral.VolumeClaimTemplate.Spec
			class := RequestedClass(spec.StorageClassName, f.DefaultClass)
			if class == "" {
				continue
			}
			if class == f.ManagedClass || (IsShared(spec.AccessModes) && IsOptedIn(f.Classes[class])) {
				return true
			}
		}
	}
	return false
}

// guardMarkers refuses ShareWarden's extended resources anywhere but where the webhook puts
// them: a user could otherwise pass a pod off as an NFS server, or steer it to the extender.
func guardMarkers(pod *corev1.Pod, allowed corev1.ResourceName) field.ErrorList {
	var errs field.ErrorList
	check := func(p *field.Path, c *corev1.Container, first bool) {
		for _, name := range []corev1.ResourceName{v1alpha1.ResourceConsumer, v1alpha1.ResourceServer} {
			if first && name == allowed {
				continue
			}
			for kind, l := range map[string]corev1.ResourceList{"requests": c.Resources.Requests, "limits": c.Resources.Limits} {
				if _, set := l[name]; set {
					errs = append(errs, field.Forbidden(p.Child("resources", kind).Key(string(name)), fmt.Sprintf(
						"%s is the marker ShareWarden puts on %s; only ShareWarden sets it: remove it from the pod", name, markerMeaning(name))))
				}
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		check(field.NewPath("spec", "initContainers").Index(i), &pod.Spec.InitContainers[i], false)
	}
	for i := range pod.Spec.Containers {
		check(field.NewPath("spec", "containers").Index(i), &pod.Spec.Containers[i], i == 0)
	}
	errs = sortErrors(errs)
	return errs
}

func markerMeaning(name corev1.ResourceName) string {
	if name == v1alpha1.ResourceServer {
		return "its own NFS server pods"
	}
	return "pods that mount a ShareWarden volume"
}
