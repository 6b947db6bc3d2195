package extender

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

const (
	sysNS    = swv1.DefaultSystemNamespace
	appNS    = "app"
	claimUID = "uid-1"
)

func node(name, zone string, mods ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelTopologyZone: zone}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
	for _, m := range mods {
		m(n)
	}
	return n
}

func fencedLabel(n *corev1.Node) { n.Labels[swv1.LabelNodeFenced] = swv1.FencedTrue }
func notReady(n *corev1.Node)    { n.Status.Conditions[0].Status = corev1.ConditionUnknown }
func unreachableTaint(n *corev1.Node) {
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute})
}

func marked(p *corev1.Pod, marker corev1.ResourceName) *corev1.Pod {
	p.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{marker: resource.MustParse("1")},
		Limits:   corev1.ResourceList{marker: resource.MustParse("1")},
	}}}
	return p
}

// serverPod is volume claimUID's server (app/data), mounting backing claim sw-<uid>.
func serverPod(uid, claimName, nodeName string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: swv1.ObjectName(uid), Namespace: sysNS, Labels: map[string]string{
			swv1.LabelClaimNamespace: appNS, swv1.LabelClaimName: claimName, swv1.LabelClaimUID: uid,
			swv1.LabelComponent: swv1.ComponentNFSServer,
		}},
		Spec: corev1.PodSpec{NodeName: nodeName, Volumes: []corev1.Volume{{Name: "export", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: swv1.ObjectName(uid)},
		}}}},
	}
	return marked(p, swv1.ResourceServer)
}

func consumerPod(name, nodeName string, claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS}, Spec: corev1.PodSpec{NodeName: nodeName}}
	for i, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: fmt.Sprintf("v%d", i), VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c},
		}})
	}
	return marked(p, swv1.ResourceConsumer)
}

func sharedVolume(name, uid string, mod func(*swv1.SharedVolumeStatus)) *swv1.SharedVolume {
	sv := &swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec:       swv1.SharedVolumeSpec{ClaimName: name, ClaimUID: uid},
		Status:     swv1.SharedVolumeStatus{Phase: swv1.PhaseReady},
	}
	if mod != nil {
		mod(&sv.Status)
	}
	return sv
}

func claim(ns, name, uid, volume string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(uid)},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: volume},
	}
}

func pv(name string, mods ...func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, m := range mods {
		m(p)
	}
	return p
}

func onHosts(hosts ...string) func(*corev1.PersistentVolume) {
	return affinity(corev1.LabelHostname, hosts...)
}

func affinity(key string, values ...string) func(*corev1.PersistentVolume) {
	return func(p *corev1.PersistentVolume) {
		p.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}},
		}}}}
	}
}

func csi(p *corev1.PersistentVolume) {
	p.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com", VolumeHandle: p.Name}
}

func dataNodes(v string) func(*corev1.PersistentVolume) {
	return func(p *corev1.PersistentVolume) {
		p.Annotations = map[string]string{swv1.AnnotationDataNodes: v}
	}
}

// world is a Store filled with nodes a1, a2 (zone-a), b1, b2 (zone-b), c1 (zone-c).
func world(objs ...any) *Store {
	s := NewStore(corev1.LabelTopologyZone, DefaultLocators())
	s.SetSynced(true)
	for _, n := range []*corev1.Node{node("a1", "zone-a"), node("a2", "zone-a"), node("b1", "zone-b"), node("b2", "zone-b"), node("c1", "zone-c")} {
		s.UpsertNode(n)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Node:
			s.UpsertNode(o)
		case *corev1.Pod:
			s.UpsertPod(o)
		case *corev1.PersistentVolumeClaim:
			s.UpsertClaim(o)
		case *corev1.PersistentVolume:
			s.UpsertPV(o)
		case *swv1.SharedVolume:
			s.UpsertSharedVolume(o)
		default:
			panic(fmt.Sprintf("world: %T", o))
		}
	}
	return s
}

var allNodes = []string{"a1", "a2", "b1", "b2", "c1"}
