package provisioner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
)

func sharedVolume(ctx context.Context, c client.Client, ns, name string) (*swv1.SharedVolume, error) {
	sv := &swv1.SharedVolume{}
	return sv, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sv)
}

func waitReady(t *testing.T, ctx context.Context, c client.Client, ns, name string) *swv1.SharedVolume {
	t.Helper()
	var sv *swv1.SharedVolume
	fixture.WaitFor(t, ctx, 90*time.Second, "volume "+ns+"/"+name+" Ready and claim Bound", func() error {
		var err error
		if sv, err = sharedVolume(ctx, c, ns, name); err != nil {
			return err
		}
		claim := &corev1.PersistentVolumeClaim{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, claim); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady || claim.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %s, claim %s, conditions %+v", sv.Status.Phase, claim.Status.Phase, sv.Status.Conditions)
		}
		return nil
	})
	return sv
}

// TestClaimLifecycle: an RWX claim is provisioned end to end, consumed from three nodes,
// resized, and deleted with nothing left behind.
func TestClaimLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	ctl := fixture.StartController(ctx, fixture.ControllerOptions(plane))
	defer func() {
		if err := ctl.Stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	ns := fixture.Namespace(t, ctx, plane, "lifecycle")
	claim := fixture.Claim(ns, "shared", fixture.Size("5Gi"))
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	sv := waitReady(t, ctx, c, ns, "shared")
	uid := string(claim.UID)
	name := swv1.ObjectName(uid)

	// Backing claim: RWO on the backing class, in ShareWarden's namespace, bound to a local PV.
	backing := &corev1.PersistentVolumeClaim{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: name}, backing); err != nil {
		t.Fatal(err)
	}
	if *backing.Spec.StorageClassName != fixture.BackingClass || backing.Spec.AccessModes[0] != corev1.ReadWriteOnce || backing.Status.Phase != corev1.ClaimBound {
		t.Errorf("backing claim: class %s modes %v phase %s", *backing.Spec.StorageClassName, backing.Spec.AccessModes, backing.Status.Phase)
	}
	localPV := &corev1.PersistentVolume{}
	if err := c.Get(ctx, client.ObjectKey{Name: backing.Spec.VolumeName}, localPV); err != nil {
		t.Fatal(err)
	}
	dataNode := localPV.Spec.NodeAffinity.Required.NodeSelectorTerms[0].MatchExpressions[0].Values[0]

	// Server: Running on the node that holds the data (the real scheduler's volume binding).
	server := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: name}, server); err != nil {
		t.Fatal(err)
	}
	if server.Spec.NodeName != dataNode || server.Status.Phase != corev1.PodRunning {
		t.Errorf("server on %q (%s), data on %q", server.Spec.NodeName, server.Status.Phase, dataNode)
	}
	if sv.Status.Server.NodeName != dataNode || sv.Status.BackingClaim == nil || sv.Status.BackingClaim.Name != name {
		t.Errorf("SharedVolume status: %+v", sv.Status)
	}

	// `kubectl get sharedvolumes -A` columns, from the apiserver's own table output.
	checkPrinterColumns(t, ctx, ns, "shared", map[string]string{"Claim": "shared", "Phase": "Ready", "Server Node": dataNode, "Failovers": "0"})

	// Service and PV: the PV points at the Service's ClusterIP.
	svc := &corev1.Service{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: name}, svc); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{}
	if err := c.Get(ctx, client.ObjectKey{Name: "pvc-" + uid}, pv); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" || pv.Spec.NFS == nil || pv.Spec.NFS.Server != svc.Spec.ClusterIP || sv.Status.ServiceIP != svc.Spec.ClusterIP {
		t.Errorf("PV NFS %+v, service IP %s, status IP %s", pv.Spec.NFS, svc.Spec.ClusterIP, sv.Status.ServiceIP)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 2049 {
		t.Errorf("service ports %+v", svc.Spec.Ports)
	}

	// Events tell the story on the claim.
	fixture.WaitFor(t, ctx, 10*time.Second, "events on the claim", func() error {
		evs, err := plane.Client().EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		seen := map[string]string{}
		for _, e := range evs.Items {
			if e.Regarding.Name == "shared" {
				seen[e.Reason] = e.Note
			}
		}
		for _, r := range []string{provisioner.ReasonServerStarting, provisioner.ReasonServerReady, provisioner.ReasonProvisioned} {
			if _, ok := seen[r]; !ok {
				return fmt.Errorf("no %s event yet (seen %v)", r, seen)
			}
		}
		// The first pass tells its three creations in one Event.
		if note := seen[provisioner.ReasonServerStarting]; !strings.Contains(note, "created backing claim") || !strings.Contains(note, "created service") {
			return fmt.Errorf("%s event %q does not name the backing claim and Service", provisioner.ReasonServerStarting, note)
		}
		if _, ok := seen[provisioner.ReasonBackingClaimCreated]; ok {
			return fmt.Errorf("a separate %s event: the first pass should tell one (seen %v)", provisioner.ReasonBackingClaimCreated, seen)
		}
		return nil
	})

	// Three consumers on three nodes mount it and run; the status counts them.
	for _, node := range plane.NodeNames() {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "consumer-" + node},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{corev1.LabelHostname: node},
				Containers:   []corev1.Container{{Name: "app", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
				Volumes:      []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared"}}}},
			},
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	fixture.WaitFor(t, ctx, 60*time.Second, "three consumers running and counted", func() error {
		sv, err := sharedVolume(ctx, c, ns, "shared")
		if err != nil {
			return err
		}
		if sv.Status.ConsumerCount != 3 {
			return fmt.Errorf("consumer count %d", sv.Status.ConsumerCount)
		}
		return nil
	})

	// Resize: the backing claim follows; once the backing volume grows (played here, as the
	// backing class's resizer would), the PV and the claim's capacity follow.
	if err := c.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
		t.Fatal(err)
	}
	claim.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("20Gi")
	if err := c.Update(ctx, claim); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 30*time.Second, "backing claim resized", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(backing), backing); err != nil {
			return err
		}
		if q := backing.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("20Gi")) != 0 {
			return fmt.Errorf("backing request %s", q.String())
		}
		return nil
	})
	backing.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("20Gi")
	if err := c.Status().Update(ctx, backing); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 30*time.Second, "PV and claim grown", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pv), pv); err != nil {
			return err
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
			return err
		}
		if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse("20Gi")) != 0 {
			return fmt.Errorf("PV capacity %s", q.String())
		}
		if q := claim.Status.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse("20Gi")) != 0 {
			return fmt.Errorf("claim capacity %s", q.String())
		}
		return nil
	})

	// Delete: consumers go, then the claim; everything of the volume goes (reclaim Delete).
	if err := c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 90*time.Second, "every object of the volume removed", func() error {
		var left []string
		for _, o := range []client.Object{
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}},
			&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-" + uid}},
			&swv1.SharedVolume{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}},
		} {
			if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
				left = append(left, fmt.Sprintf("%T %s (err %v)", o, o.GetName(), err))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("left: %s", strings.Join(left, ", "))
		}
		return nil
	})
}

// TestControllerKilledMidProvisioning: the controller stops right after creating the first
// objects; a new one converges with no duplicates.
func TestControllerKilledMidProvisioning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := fixture.Namespace(t, ctx, plane, "restart")
	ctl := fixture.StartController(ctx, fixture.ControllerOptions(plane))
	claim := fixture.Claim(ns, "vol")
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	uid := string(claim.UID)
	fixture.WaitFor(t, ctx, 60*time.Second, "backing claim created", func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(uid)}, &corev1.PersistentVolumeClaim{})
	})
	if err := ctl.Stop(); err != nil {
		t.Fatalf("controller: %v", err)
	}
	ctl = fixture.StartController(ctx, fixture.ControllerOptions(plane))
	defer func() {
		if err := ctl.Stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	waitReady(t, ctx, c, ns, "vol")
	sel := client.MatchingLabels{swv1.LabelClaimUID: uid}
	pods, svcs, pvcs := &corev1.PodList{}, &corev1.ServiceList{}, &corev1.PersistentVolumeClaimList{}
	for _, l := range []client.ObjectList{pods, svcs, pvcs} {
		if err := c.List(ctx, l, client.InNamespace(fixture.SystemNamespace), sel); err != nil {
			t.Fatal(err)
		}
	}
	if len(pods.Items) != 1 || len(svcs.Items) != 1 || len(pvcs.Items) != 1 {
		t.Errorf("want one server, service and backing claim; got %d, %d, %d", len(pods.Items), len(svcs.Items), len(pvcs.Items))
	}
}

func checkPrinterColumns(t *testing.T, ctx context.Context, ns, name string, want map[string]string) {
	t.Helper()
	raw, err := plane.Client().CoreV1().RESTClient().Get().AbsPath("/apis/sharewarden.io/v1alpha1/sharedvolumes").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		t.Fatalf("table request: %v", err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatalf("decoding table: %v", err)
	}
	col := map[string]int{}
	for i, c := range table.ColumnDefinitions {
		col[c.Name] = i
	}
	for _, c := range []string{"Name", "Claim", "Phase", "Server Node", "Failovers", "Age"} {
		if _, ok := col[c]; !ok {
			t.Errorf("no %q column in %v", c, table.ColumnDefinitions)
		}
	}
	for _, row := range table.Rows {
		if fmt.Sprint(row.Cells[col["Name"]]) != name {
			continue
		}
		for c, v := range want {
			if got := fmt.Sprint(row.Cells[col[c]]); got != v {
				t.Errorf("column %s = %q, want %q", c, got, v)
			}
		}
		return
	}
	t.Errorf("no row for %s/%s in %d rows", ns, name, len(table.Rows))
}
