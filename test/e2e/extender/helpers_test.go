package extender_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/mutators"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
)

const caseTimeout = 3 * time.Minute

// namespace is fixture.Namespace whose cleanup first deletes the pods at once and waits until
// the namespace is gone, so that the next case counts only its own servers.
func namespace(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	fixture.Namespace(t, ctx, plane, name)
	t.Cleanup(func() {
		cs := plane.Client()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = cs.CoreV1().Pods(name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{})
		_ = cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Logf("namespace %s not gone: %v", name, err)
		}
	})
	return name
}

// volume is a server-side volume made by hand, as the controller would: a SharedVolume, a
// backing claim bound to a CSI PV with the given node affinity and data-nodes annotation.
type volume struct {
	ns, name, uid string
	backing       string
}

func newVolume(t *testing.T, ctx context.Context, c client.Client, ns, name, dataNodes string, status func(*swv1.SharedVolumeStatus)) volume {
	t.Helper()
	v := volume{ns: ns, name: name, uid: "uid-" + ns + "-" + name}
	v.backing = swv1.ObjectName(v.uid)
	pvName := "bk-" + ns + "-" + name
	createSharedVolume(t, ctx, c, ns, name, v.uid, status)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pvName, Annotations: map[string]string{}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              "",
			ClaimRef:                      &corev1.ObjectReference{Namespace: ns, Name: v.backing},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "replicated.csi.sharewarden.test", VolumeHandle: pvName,
			}},
		},
	}
	if dataNodes != "" {
		pv.Annotations[swv1.AnnotationDataNodes] = dataNodes
	}
	if err := c.Create(ctx, pv); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), pv) })
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: v.backing},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(""),
			VolumeName:       pvName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if err := c.Create(ctx, pvc); err != nil {
		t.Fatal(err)
	}
	waitBound(t, ctx, c, ns, v.backing)
	return v
}

func createSharedVolume(t *testing.T, ctx context.Context, c client.Client, ns, name, uid string, status func(*swv1.SharedVolumeStatus)) {
	t.Helper()
	sv := &swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       swv1.SharedVolumeSpec{ClaimName: name, ClaimUID: uid},
	}
	if err := c.Create(ctx, sv); err != nil {
		t.Fatal(err)
	}
	setStatus(t, ctx, c, ns, name, func(s *swv1.SharedVolumeStatus) {
		s.Phase = swv1.PhaseReady
		if status != nil {
			status(s)
		}
	})
}

func setStatus(t *testing.T, ctx context.Context, c client.Client, ns, name string, mod func(*swv1.SharedVolumeStatus)) {
	t.Helper()
	var sv swv1.SharedVolume
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &sv); err != nil {
		t.Fatal(err)
	}
	mod(&sv.Status)
	if err := c.Status().Update(ctx, &sv); err != nil {
		t.Fatal(err)
	}
}

func waitBound(t *testing.T, ctx context.Context, c client.Client, ns, name string) {
	t.Helper()
	fixture.WaitFor(t, ctx, time.Minute, "claim "+ns+"/"+name+" Bound", func() error {
		var pvc corev1.PersistentVolumeClaim
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &pvc); err != nil {
			return err
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %q", pvc.Status.Phase)
		}
		return nil
	})
}

// serverPod is the volume's NFS server pod as the provisioner builds it, marked by the
// webhook's rules (the case's namespace plays ShareWarden's).
func serverPod(t *testing.T, v volume) *corev1.Pod {
	t.Helper()
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: v.ns, Name: v.name, UID: types.UID(v.uid)}}
	p := provisioner.ServerPod(provisioner.Volume{
		Claim: claim, Namespace: v.ns,
		Server: provisioner.ServerConfig{Image: "sharewarden:e2e", HealthPort: 8080, ExportPath: "/export"},
	})
	res, err := mutators.MutatePod(p, mutators.PodFacts{SystemNamespace: v.ns})
	if err != nil || res.Outcome != mutators.MarkedServer {
		t.Fatalf("marking server pod: %v (%v)", err, res.Outcome)
	}
	return res.Pod
}

// consumerPod mounts claim (on the managed class), marked by the webhook's rules.
func consumerPod(t *testing.T, ns, name string, claim *corev1.PersistentVolumeClaim) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "busybox"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name},
			}}},
		},
	}
	res, err := mutators.MutatePod(p, mutators.PodFacts{ManagedClass: swv1.DefaultManagedStorageClass,
		Claims: map[string]*corev1.PersistentVolumeClaim{claim.Name: claim}})
	if err != nil || res.Outcome != mutators.MarkedConsumer {
		t.Fatalf("marking consumer pod: %v (%v)", err, res.Outcome)
	}
	return res.Pod
}

// schedule creates pod and returns the node the scheduler bound it to, once kwok runs it.
func schedule(t *testing.T, ctx context.Context, c client.Client, pod *corev1.Pod) string {
	t.Helper()
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	var node string
	fixture.WaitFor(t, ctx, time.Minute, "pod "+pod.Namespace+"/"+pod.Name+" running", func() error {
		var p corev1.Pod
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), &p); err != nil {
			return err
		}
		node = p.Spec.NodeName
		if node == "" || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("node %q phase %q, conditions %v", node, p.Status.Phase, p.Status.Conditions)
		}
		return nil
	})
	return node
}

// requests reads the extender's request counter from /metrics, summed by kind.
func requests(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get(extenderURL + extender.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, extender.MetricRequests+"{") {
			continue
		}
		labels, value, _ := strings.Cut(line[len(extender.MetricRequests):], " ")
		_, kind, _ := strings.Cut(labels, `kind="`)
		kind, _, _ = strings.Cut(kind, `"`)
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[kind] += f
	}
	return out
}

func zoneOf(node string) string {
	for _, n := range nodes {
		if n.Name == node {
			return n.Zone
		}
	}
	return ""
}

func setNodeLabel(t *testing.T, ctx context.Context, c client.Client, node, key, value string) {
	t.Helper()
	var n corev1.Node
	if err := c.Get(ctx, types.NamespacedName{Name: node}, &n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	if value == "" {
		delete(n.Labels, key)
	} else {
		n.Labels[key] = value
	}
	if err := c.Patch(ctx, &n, patch); err != nil {
		t.Fatal(err)
	}
}

// waitExtenderRefuses waits until the extender's own view (its informer-fed store) has caught
// up with a change just written: its filter verb, asked directly for pod, refuses node. Without
// it a pod scheduled right after the write may be judged on the old view.
func waitExtenderRefuses(t *testing.T, ctx context.Context, pod *corev1.Pod, node string) {
	t.Helper()
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	body, err := json.Marshal(extenderv1.ExtenderArgs{Pod: pod, NodeNames: &names})
	if err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 30*time.Second, "the extender refusing "+node, func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, extenderURL+extender.DefaultURLPrefix+"/filter", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var res extenderv1.ExtenderFilterResult
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return err
		}
		if _, refused := res.FailedNodes[node]; !refused && (res.NodeNames == nil || slices.Contains(*res.NodeNames, node)) {
			return fmt.Errorf("still accepts %s (error %q)", node, res.Error)
		}
		return nil
	})
}
