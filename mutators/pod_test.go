package mutators_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/mutators"
)

type podOpt func(*corev1.Pod)

func pod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team-a"},
		Spec: corev1.PodSpec{
			SchedulerName: mutators.DefaultScheduler,
			Containers:    []corev1.Container{{Name: "app", Image: "app"}, {Name: "sidecar", Image: "sidecar"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func mounts(claimName string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v" + claimName,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}}})
	}
}

func ephemeral(className *string, m ...corev1.PersistentVolumeAccessMode) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{
			Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{
				Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: className, AccessModes: m},
			}},
		}})
	}
}

func requests(container int, name corev1.ResourceName, q string) podOpt {
	return func(p *corev1.Pod) {
		r := &p.Spec.Containers[container].Resources
		if r.Requests == nil {
			r.Requests = corev1.ResourceList{}
		}
		r.Requests[name] = *resourceQ(q)
	}
}

func limits(container int, name corev1.ResourceName, q string) podOpt {
	return func(p *corev1.Pod) {
		r := &p.Spec.Containers[container].Resources
		if r.Limits == nil {
			r.Limits = corev1.ResourceList{}
		}
		r.Limits[name] = *resourceQ(q)
	}
}

func inNamespace(ns string) podOpt { return func(p *corev1.Pod) { p.Namespace = ns } }

func labelled(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[k] = v
	}
}

func scheduler(name string) podOpt { return func(p *corev1.Pod) { p.Spec.SchedulerName = name } }

func podFacts() mutators.PodFacts {
	return mutators.PodFacts{
		ManagedClass:    managed,
		SystemNamespace: v1alpha1.DefaultSystemNamespace,
		Claims: map[string]*corev1.PersistentVolumeClaim{
			"shared": claim(on(managed), annotated(v1alpha1.AnnotationBackingStorageClass, "fast")),
			"own":    claim(on("fast"), modes(corev1.ReadWriteOnce)),
		},
		Classes: classes(),
	}
}

func TestMutatePod(t *testing.T) {
	const second = "sharewarden-scheduler"
	withScheduler := func(f *mutators.PodFacts) { f.SchedulerName = second }
	const serverProfile = "sharewarden-server-scheduler"
	withServerProfile := func(f *mutators.PodFacts) { f.SchedulerName, f.ServerSchedulerName = second, serverProfile }
	withDefault := func(name string) func(*mutators.PodFacts) {
		return func(f *mutators.PodFacts) { f.DefaultClass = name }
	}
	serverPod := []podOpt{inNamespace(v1alpha1.DefaultSystemNamespace), labelled(v1alpha1.LabelComponent, v1alpha1.ComponentNFSServer)}

	cases := []struct {
		name      string
		pod       *corev1.Pod
		facts     []func(*mutators.PodFacts)
		outcome   mutators.Outcome
		marker    corev1.ResourceName // expected on container 0, requests and limits = 1
		scheduler string              // expected schedulerName afterwards
		deny      []string
	}{
		{name: "mounts a managed claim", pod: pod(mounts("shared")), outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "mounts an ordinary claim", pod: pod(mounts("own")), outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "claim not there (yet)", pod: pod(mounts("missing")), outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "no volumes", pod: pod(), outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ordinary and managed claims", pod: pod(mounts("own"), mounts("shared")), outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ephemeral RWX on an opted-in class", pod: pod(ephemeral(ptr.To("fast"), corev1.ReadWriteMany)), outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ephemeral on the managed class", pod: pod(ephemeral(ptr.To(managed), corev1.ReadWriteOnce)), outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ephemeral RWX on the opted-in default class", pod: pod(ephemeral(nil, corev1.ReadWriteMany)), facts: []func(*mutators.PodFacts){withDefault("slow")},
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ephemeral RWO on an opted-in class", pod: pod(ephemeral(ptr.To("fast"), corev1.ReadWriteOnce)), outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ephemeral RWX on a class not opted in", pod: pod(ephemeral(ptr.To("plain"), corev1.ReadWriteMany)), outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "ephemeral RWX, no class and no default", pod: pod(ephemeral(nil, corev1.ReadWriteMany)), outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "second scheduler takes a consumer", pod: pod(mounts("shared")), facts: []func(*mutators.PodFacts){withScheduler},
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: second},
		{name: "second scheduler takes a pod with no scheduler set", pod: pod(mounts("shared"), scheduler("")), facts: []func(*mutators.PodFacts){withScheduler},
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: second},
		{name: "the user's scheduler is kept", pod: pod(mounts("shared"), scheduler("my-scheduler")), facts: []func(*mutators.PodFacts){withScheduler},
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: "my-scheduler"},
		{name: "second scheduler leaves other pods alone", pod: pod(mounts("own")), facts: []func(*mutators.PodFacts){withScheduler},
			outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},
		{name: "already marked (re-invocation)", pod: pod(mounts("shared"), requests(0, v1alpha1.ResourceConsumer, "1"), limits(0, v1alpha1.ResourceConsumer, "1")),
			outcome: mutators.AlreadyMarked, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "a wrong count on the right container is corrected", pod: pod(mounts("shared"), requests(0, v1alpha1.ResourceConsumer, "3")),
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "other resources of the first container are kept", pod: pod(mounts("shared"), requests(0, corev1.ResourceCPU, "250m"), limits(0, corev1.ResourceMemory, "1Gi")),
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "NFS server pod", pod: pod(serverPod...), outcome: mutators.MarkedServer, marker: v1alpha1.ResourceServer, scheduler: mutators.DefaultScheduler},
		{name: "NFS server pod and second scheduler", pod: pod(serverPod...), facts: []func(*mutators.PodFacts){withScheduler},
			outcome: mutators.MarkedServer, marker: v1alpha1.ResourceServer, scheduler: second},
		{name: "NFS server pod to the server profile", pod: pod(serverPod...), facts: []func(*mutators.PodFacts){withServerProfile},
			outcome: mutators.MarkedServer, marker: v1alpha1.ResourceServer, scheduler: serverProfile},
		{name: "NFS server pod that names a scheduler keeps it",
			pod:   pod(append(serverPod, scheduler(second), requests(0, v1alpha1.ResourceServer, "1"), limits(0, v1alpha1.ResourceServer, "1"))...),
			facts: []func(*mutators.PodFacts){withServerProfile}, outcome: mutators.AlreadyMarked, marker: v1alpha1.ResourceServer, scheduler: second},
		{name: "NFS server pod already marked on the server profile", pod: pod(append(serverPod, scheduler(serverProfile), requests(0, v1alpha1.ResourceServer, "1"), limits(0, v1alpha1.ResourceServer, "1"))...),
			facts: []func(*mutators.PodFacts){withServerProfile}, outcome: mutators.AlreadyMarked, marker: v1alpha1.ResourceServer, scheduler: serverProfile},
		{name: "NFS server pod to a server profile of the cluster's scheduler", pod: pod(serverPod...),
			facts:   []func(*mutators.PodFacts){func(f *mutators.PodFacts) { f.ServerSchedulerName = serverProfile }},
			outcome: mutators.MarkedServer, marker: v1alpha1.ResourceServer, scheduler: serverProfile},
		{name: "consumer keeps the default scheduler when only servers have a profile", pod: pod(mounts("shared")),
			facts:   []func(*mutators.PodFacts){func(f *mutators.PodFacts) { f.ServerSchedulerName = serverProfile }},
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: mutators.DefaultScheduler},
		{name: "consumer stays on the consumer profile when servers have their own", pod: pod(mounts("shared")), facts: []func(*mutators.PodFacts){withServerProfile},
			outcome: mutators.MarkedConsumer, marker: v1alpha1.ResourceConsumer, scheduler: second},
		{name: "server label outside the system namespace is just a label", pod: pod(labelled(v1alpha1.LabelComponent, v1alpha1.ComponentNFSServer)),
			outcome: mutators.NotConsumer, scheduler: mutators.DefaultScheduler},

		{name: "user-set consumer marker on a pod without shared volumes", pod: pod(requests(0, v1alpha1.ResourceConsumer, "1")),
			deny: []string{"spec.containers[0].resources.requests[sharewarden.io/rwx-consumer]", "only ShareWarden sets it", "remove it"}},
		{name: "user-set server marker", pod: pod(mounts("shared"), limits(0, v1alpha1.ResourceServer, "1")),
			deny: []string{"spec.containers[0].resources.limits[sharewarden.io/rwx-server]", "NFS server pods"}},
		{name: "server marker claimed by a labelled tenant pod", pod: pod(labelled(v1alpha1.LabelComponent, v1alpha1.ComponentNFSServer), requests(0, v1alpha1.ResourceServer, "1"), limits(0, v1alpha1.ResourceServer, "1")),
			deny: []string{"rwx-server"}},
		{name: "marker on another container", pod: pod(mounts("shared"), requests(1, v1alpha1.ResourceConsumer, "1")),
			deny: []string{"spec.containers[1].resources.requests[sharewarden.io/rwx-consumer]"}},
		{name: "marker on an init container", pod: pod(mounts("shared"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{v1alpha1.ResourceConsumer: *resourceQ("1")}}}}
		}), deny: []string{"spec.initContainers[0].resources.limits[sharewarden.io/rwx-consumer]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := podFacts()
			for _, o := range tc.facts {
				o(&f)
			}
			in := tc.pod.DeepCopy()
			res, err := mutators.MutatePod(tc.pod, f)
			if !equalJSON(t, in, tc.pod) {
				t.Fatal("MutatePod modified its input")
			}
			if tc.deny != nil {
				d, ok := mutators.AsDenied(err)
				if !ok {
					t.Fatalf("want a denial, got outcome %q err %v", res.Outcome, err)
				}
				for _, s := range tc.deny {
					if !strings.Contains(d.Error(), s) {
						t.Errorf("denial %q lacks %q", d.Error(), s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tc.outcome {
				t.Errorf("outcome %q, want %q", res.Outcome, tc.outcome)
			}
			if res.Changed != (tc.outcome == mutators.MarkedConsumer || tc.outcome == mutators.MarkedServer) {
				t.Errorf("Changed=%v for outcome %q", res.Changed, res.Outcome)
			}
			got := res.Pod
			if got.Spec.SchedulerName != tc.scheduler {
				t.Errorf("schedulerName %q, want %q", got.Spec.SchedulerName, tc.scheduler)
			}
			for i, c := range got.Spec.Containers {
				for _, name := range []corev1.ResourceName{v1alpha1.ResourceConsumer, v1alpha1.ResourceServer} {
					req, hasReq := c.Resources.Requests[name]
					lim, hasLim := c.Resources.Limits[name]
					want := i == 0 && name == tc.marker
					if hasReq != want || hasLim != want {
						t.Errorf("container %d: %s present in requests=%v limits=%v, want %v", i, name, hasReq, hasLim, want)
					}
					if want && (req.String() != "1" || lim.String() != "1") {
						t.Errorf("container %d: %s request %s limit %s, want 1 and 1", i, name, req.String(), lim.String())
					}
				}
			}
			if orig := tc.pod.Spec.Containers[0].Resources; len(orig.Requests) > 0 || len(orig.Limits) > 0 {
				for name, q := range orig.Requests {
					if name != tc.marker && got.Spec.Containers[0].Resources.Requests[name] != q {
						t.Errorf("request %s changed", name)
					}
				}
				for name, q := range orig.Limits {
					if name != tc.marker && got.Spec.Containers[0].Resources.Limits[name] != q {
						t.Errorf("limit %s changed", name)
					}
				}
			}
		})
	}
}

func TestMutatePodEdges(t *testing.T) {
	if _, err := mutators.MutatePod(nil, podFacts()); err == nil {
		t.Error("want an error for a nil pod")
	}
	// A pod without containers is invalid and the apiserver will say so; no panic here.
	p := pod(mounts("shared"))
	p.Spec.Containers = nil
	res, err := mutators.MutatePod(p, podFacts())
	if err != nil || res.Changed {
		t.Errorf("containerless pod: changed=%v err=%v", res.Changed, err)
	}
	// Facts without maps are fine.
	res, err = mutators.MutatePod(pod(mounts("shared"), ephemeral(ptr.To("fast"), corev1.ReadWriteMany)), mutators.PodFacts{ManagedClass: managed})
	if err != nil || res.Changed {
		t.Errorf("empty facts: changed=%v err=%v", res.Changed, err)
	}
}
