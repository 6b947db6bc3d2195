package chart_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/webhookrun"
)

// TestInstallAndRWXClaim: the chart, rendered with the second scheduler, is server-side applied
// to the real apiserver (every object accepted); the plane's kube-scheduler runs the chart's
// KubeSchedulerConfiguration; the controller and webhook run as processes with the arguments
// of the rendered Deployments and the tokens of the chart's ServiceAccounts; and the chart's
// own `helm test` objects (an RWX claim on an opted-in class and a pod mounting it) go through
// them: the claim is rewritten, provisioned and Bound, the pods reach the second scheduler.
func TestInstallAndRWXClaim(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	bin := buildSharewarden(t)
	// The managed class on the legacy in-tree provisioner, which the controller run here serves
	// itself: the CSI class's claims go through csi-provisioner, which only a real cluster runs.
	// The rest of the CSI driver (CSIDriver, node DaemonSet, sidecars and their RBAC,
	// VolumeSnapshotClass) is rendered and applied all the same.
	objs := render(t, "-f", ciValues("scheduler-values.yaml"), "--set", "test.storageClassName="+fixture.BackingClass, "--set", "storageClass.provisioner=legacy")

	// The chart's scheduler configuration, its extender URL and CA pointed at the extender this
	// test runs on 127.0.0.1.
	ports, err := cluster.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	extenderPort, webhookPort, controllerHealth, extenderHealth := ports[0], ports[1], ports[2], ports[3]
	extCert, extKey, extCA := filepath.Join(workDir, "extender.crt"), filepath.Join(workDir, "extender.key"), filepath.Join(workDir, "extender-ca.crt")
	caPEM, err := webhookrun.WriteServingCert(extCert, extKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(extCA, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	schedConf := localSchedulerConfig(t, objs, fmt.Sprintf("https://127.0.0.1:%d/scheduler", extenderPort), extCA)
	plane, err := cluster.Start(ctx, cluster.Config{BinDir: binDir, SchedulerConfig: schedConf, Nodes: cluster.ThreeNodesTwoZones()})
	if err != nil {
		t.Fatalf("starting control plane: %v", err)
	}
	defer plane.Stop()
	if err := fixture.InstallCRDs(ctx, plane); err != nil {
		t.Fatal(err)
	}
	// helm installs all of crds/ before the templates: the VolumeSnapshot CRDs too, which the
	// chart's VolumeSnapshotClass needs.
	if err := installSnapshotCRDs(ctx, plane); err != nil {
		t.Fatal(err)
	}
	if err := plane.CreateNamespace(ctx, releaseNamespace, nil); err != nil {
		t.Fatal(err)
	}

	// Every object the chart installs, server-side applied: the apiserver must accept each.
	var install, tests []*unstructured.Unstructured
	for _, o := range objs {
		if isHook(o) {
			tests = append(tests, o)
		} else {
			install = append(install, o)
		}
	}
	applied, err := plane.Apply(ctx, releaseNamespace, manifests(t, install)...)
	if err != nil {
		t.Fatalf("server-side apply of the chart: %v", err)
	}
	if len(applied) != len(install) {
		t.Fatalf("applied %d of %d objects", len(applied), len(install))
	}
	if len(tests) != 3 {
		t.Fatalf("want the helm test namespace, claim and pod, got %d hook objects", len(tests))
	}
	// Upgrading from a chart that made the legacy class, with the CSI class asked for: the class
	// keeps its provisioner (it is immutable, a change would fail the upgrade) and the notes say so.
	// helm install --dry-run=server reads the cluster as an upgrade does (lookup); from a copy of
	// the chart without its kubeVersion, which the plane's source-built apiserver (v0.0.0) fails.
	out, err := helm(ctx, "install", releaseName, chartWithoutKubeVersion(t), "--namespace", releaseNamespace, "--kubeconfig", plane.Kubeconfig(),
		"--dry-run=server", "--take-ownership", "-f", ciValues("scheduler-values.yaml"))
	if err != nil {
		t.Fatalf("rendering over the installed legacy class: %v", err)
	}
	if !strings.Contains(string(out), "provisioner: "+swv1.Provisioner+"\n") || strings.Contains(string(out), "provisioner: "+swv1.CSIDriverName) ||
		!strings.Contains(string(out), "StorageClass "+swv1.DefaultManagedStorageClass+" already exists with the provisioner "+swv1.Provisioner+" and keeps it") {
		t.Errorf("rendered over the legacy class, the chart changes its provisioner or does not say why not:\n%s", out)
	}

	// The roles, as the chart's ServiceAccounts: not admin.
	cs := plane.Client()
	kubeconfigs := map[string]string{}
	for _, role := range []string{"controller", "webhook", "extender", "nfs-server"} {
		kubeconfigs[role] = serviceAccountKubeconfig(t, ctx, plane, "sharewarden-"+role)
	}

	// The webhook, with the rendered arguments; only where it listens and its certificate (for
	// 127.0.0.1 rather than the in-cluster Service name) change.
	certFile, keyFile := filepath.Join(workDir, "webhook.crt"), filepath.Join(workDir, "webhook.key")
	caBundle, err := webhookrun.WriteServingCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	whArgs := deploymentArgs(t, objs, "sharewarden-webhook", map[string]string{
		"--kubeconfig": kubeconfigs["webhook"], "--bind-address": "127.0.0.1", "--secure-port": strconv.Itoa(webhookPort),
		"--tls-cert-file": certFile, "--tls-private-key-file": keyFile,
	})
	wh := startRole(t, bin, "webhook", whArgs)
	defer wh.stop(t)
	waitOK(t, ctx, wh, fmt.Sprintf("https://127.0.0.1:%d/readyz", webhookPort))

	// The chart's MutatingWebhookConfiguration, its clientConfig swapped for the local URL:
	// same rules, selectors, matchConditions, policies and timeouts.
	registerWebhook := func(applied []*unstructured.Unstructured) {
		t.Helper()
		mwc := convert[admissionregistrationv1.MutatingWebhookConfiguration](t, fixture.FindObject(applied, "MutatingWebhookConfiguration", "sharewarden"))
		for i := range mwc.Webhooks {
			svc := mwc.Webhooks[i].ClientConfig.Service
			mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{
				URL: ptr.To(fmt.Sprintf("https://127.0.0.1:%d%s", webhookPort, ptr.Deref(svc.Path, "/"))), CABundle: caBundle,
			}
		}
		mwc.ResourceVersion, mwc.UID, mwc.ManagedFields = "", "", nil
		mwcAPI := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
		if err := mwcAPI.Delete(ctx, mwc.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := mwcAPI.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
			t.Fatalf("registering the chart's webhooks at the local URL: %v", err)
		}
		waitWebhookCalled(t, ctx, plane)
	}
	registerWebhook(applied)

	// The controller, with the rendered arguments (leader election included).
	ctlOverride := map[string]string{
		"--kubeconfig": kubeconfigs["controller"], "--metrics-bind-address": "0",
		"--health-probe-bind-address": "127.0.0.1:" + strconv.Itoa(controllerHealth),
	}
	// The CSI controller service on a socket here (the sidecars' part is in test/e2e/csi).
	ctlOverride["--csi-endpoint"] = "unix://" + filepath.Join(workDir, "csi.sock")
	ctlArgs := deploymentArgs(t, objs, "sharewarden-controller", ctlOverride)
	ctl := startRole(t, bin, "controller", ctlArgs)
	defer ctl.stop(t)
	waitOK(t, ctx, ctl, fmt.Sprintf("http://127.0.0.1:%d/readyz", controllerHealth))
	// The extender, with the rendered arguments; the plane's kube-scheduler calls it over HTTPS.
	extArgs := deploymentArgs(t, objs, "sharewarden-extender", map[string]string{
		"--kubeconfig": kubeconfigs["extender"], "--bind-address": "127.0.0.1", "--secure-port": strconv.Itoa(extenderPort),
		"--tls-cert-file": extCert, "--tls-private-key-file": extKey, "--health-address": "127.0.0.1:" + strconv.Itoa(extenderHealth),
	})
	ext := startRole(t, bin, "extender", extArgs)
	defer ext.stop(t)
	waitOK(t, ctx, ext, fmt.Sprintf("http://127.0.0.1:%d/readyz", extenderHealth))

	// An opted-in RWO class backed by local PVs (the chart's managed class is already there).
	if err := fixture.SetupStorage(ctx, plane, fixture.Storage{}); err != nil {
		t.Fatal(err)
	}
	if _, err := plane.Apply(ctx, releaseNamespace, manifests(t, tests)...); err != nil {
		t.Fatalf("applying the helm test objects: %v", err)
	}
	testNS := tests[0].GetName()
	c := fixture.Client(t, plane)
	claim := &corev1.PersistentVolumeClaim{}
	var sv swv1.SharedVolume
	fixture.WaitFor(t, ctx, 3*time.Minute, "the helm test claim rewritten, provisioned and Bound", func() error {
		for _, r := range []*roleProc{wh, ctl, ext} {
			if s := r.forbidden(); s != "" { // a missing RBAC verb: no point waiting
				return fixture.GiveUp(fmt.Errorf("%s was refused by RBAC:\n%s", r.name, s))
			}
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "rwx-test"}, claim); err != nil {
			return err
		}
		if err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "rwx-test"}, &sv); err != nil {
			return err
		}
		if claim.Status.Phase != corev1.ClaimBound || sv.Status.Phase != swv1.PhaseReady {
			return fmt.Errorf("claim %s, volume %s %+v", claim.Status.Phase, sv.Status.Phase, sv.Status.Conditions)
		}
		return nil
	})
	if ptr.Deref(claim.Spec.StorageClassName, "") != swv1.DefaultManagedStorageClass || claim.Annotations[swv1.AnnotationBackingStorageClass] != fixture.BackingClass {
		t.Errorf("claim not rewritten by the webhook: class %v, annotations %v", claim.Spec.StorageClassName, claim.Annotations)
	}

	// The NFS server: the chart's server ServiceAccount and image, handed to the second
	// scheduler's server profile.
	server := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: swv1.ObjectName(string(claim.UID))}, server); err != nil {
		t.Fatal(err)
	}
	if server.Spec.ServiceAccountName != "sharewarden-nfs-server" || server.Spec.SchedulerName != "sharewarden-server-scheduler" ||
		server.Spec.Containers[0].Image != "ghcr.io/sharewarden/sharewarden-nfs-server:0.1.0" || server.Spec.NodeName == "" {
		t.Errorf("server pod: account %s scheduler %s image %s node %q", server.Spec.ServiceAccountName, server.Spec.SchedulerName, server.Spec.Containers[0].Image, server.Spec.NodeName)
	}
	if _, marked := server.Spec.Containers[0].Resources.Requests[swv1.ResourceServer]; !marked {
		t.Errorf("server pod not marked for the extender: %v", server.Spec.Containers[0].Resources.Requests)
	}
	// The helm test pod: marked as a consumer and placed by the second scheduler.
	pod := &corev1.Pod{}
	fixture.WaitFor(t, ctx, time.Minute, "the helm test pod scheduled", func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "rwx-test"}, pod); err != nil {
			return err
		}
		if pod.Spec.NodeName == "" {
			return errors.New("not scheduled yet")
		}
		return nil
	})
	if _, marked := pod.Spec.Containers[0].Resources.Requests[swv1.ResourceConsumer]; !marked || pod.Spec.SchedulerName != "sharewarden-scheduler" {
		t.Errorf("test pod: scheduler %s, requests %v", pod.Spec.SchedulerName, pod.Spec.Containers[0].Resources.Requests)
	}

	// kube-scheduler consulted the extender for the marked pods (asked of this extender process, before the reinstall restarts it).
	if n := metricSum(t, ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", extenderHealth), extender.MetricRequests); n == 0 {
		t.Error("the scheduler never called the extender")
	}

	// helm uninstall while the volume lives and the controller still runs (as in its termination
	// grace period), then helm install again: nothing of the volume is released, and it serves
	// again at the same address with the same backing claim and PV.
	keep := volumeIdentity(t, ctx, c, claim)
	for i := len(applied) - 1; i >= 0; i-- { // helm uninstalls in the reverse of its install order
		if err := c.Delete(ctx, applied[i].DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("uninstalling %s %s: %v", applied[i].GetKind(), applied[i].GetName(), err)
		}
	}
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if got := volumeIdentity(t, ctx, c, claim); got != keep {
			t.Fatalf("uninstalling the chart changed the volume:\n was %s\n now %s", keep, got)
		}
	}
	for _, r := range []*roleProc{wh, ctl, ext} {
		r.stop(t)
	}
	if applied, err = plane.Apply(ctx, releaseNamespace, manifests(t, install)...); err != nil {
		t.Fatalf("reinstalling the chart: %v", err)
	}
	for _, role := range []string{"controller", "webhook", "extender", "nfs-server"} {
		kubeconfigs[role] = serviceAccountKubeconfig(t, ctx, plane, "sharewarden-"+role) // new accounts, new tokens
	}
	wh = startRole(t, bin, "webhook", whArgs)
	defer wh.stop(t)
	waitOK(t, ctx, wh, fmt.Sprintf("https://127.0.0.1:%d/readyz", webhookPort))
	registerWebhook(applied)
	ctl = startRole(t, bin, "controller", ctlArgs)
	defer ctl.stop(t)
	waitOK(t, ctx, ctl, fmt.Sprintf("http://127.0.0.1:%d/readyz", controllerHealth))
	ext = startRole(t, bin, "extender", extArgs)
	defer ext.stop(t)
	fixture.WaitFor(t, ctx, 2*time.Minute, "the volume Ready again after the reinstall, unchanged", func() error {
		if err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "rwx-test"}, &sv); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady {
			return fmt.Errorf("volume %s %+v", sv.Status.Phase, sv.Status.Conditions)
		}
		if got := volumeIdentity(t, ctx, c, claim); got != keep {
			return fixture.GiveUp(fmt.Errorf("the reinstall changed the volume:\n was %s\n now %s", keep, got))
		}
		return nil
	})

	// Deleting the claim removes the volume, still as the controller's ServiceAccount.
	if err := c.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 2*time.Minute, "the volume removed", func() error {
		err := c.Get(ctx, client.ObjectKey{Namespace: testNS, Name: "rwx-test"}, &sv)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("SharedVolume still there (%v, phase %s)", err, sv.Status.Phase)
	})
	for _, r := range []*roleProc{wh, ctl, ext} {
		if s := r.forbidden(); s != "" {
			t.Errorf("%s was refused by RBAC:\n%s", r.name, s)
		}
	}

	// Least privilege: what the roles must not do.
	denied := []struct {
		user string
		attr authorizationv1.ResourceAttributes
	}{
		{"controller", authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "delete", Resource: "persistentvolumeclaims", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "update", Resource: "storageclasses", Group: "storage.k8s.io"}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "services", Namespace: testNS}},
		{"webhook", authorizationv1.ResourceAttributes{Verb: "update", Resource: "persistentvolumeclaims", Namespace: testNS}},
		{"webhook", authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}},
		{"nfs-server", authorizationv1.ResourceAttributes{Verb: "update", Resource: "leases", Group: "coordination.k8s.io", Namespace: "default"}},
		// The client allowlist: a server reads its own pod, in the release namespace only, and writes none.
		{"nfs-server", authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods", Namespace: testNS}},
		{"nfs-server", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "networkpolicies", Group: "networking.k8s.io", Namespace: testNS}},
		{"extender", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes"}},
		{"extender", authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets"}},
		// The CSI sidecars run as the controller: still no secrets, no snapshots outside its namespace.
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "volumesnapshots", Group: "snapshot.storage.k8s.io", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets", Namespace: testNS}},
		{"csi-node", authorizationv1.ResourceAttributes{Verb: "get", Resource: "persistentvolumes"}},
	}
	allowed := []struct {
		user string
		attr authorizationv1.ResourceAttributes
	}{
		// The CSI sidecars' and the controller's CSI permissions: not exercised here (the class is
		// the legacy one), so checked here.
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "persistentvolumes"}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "update", Resource: "persistentvolumeclaims", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "persistentvolumeclaims", Subresource: "status", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "volumesnapshotcontents", Subresource: "status", Group: "snapshot.storage.k8s.io"}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "volumesnapshots", Group: "snapshot.storage.k8s.io", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "list", Resource: "volumesnapshotclasses", Group: "snapshot.storage.k8s.io"}},
		// Fencing: not exercised by a healthy volume, so checked here.
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "nodes"}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "delete", Resource: "pods", Namespace: testNS}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "update", Resource: "leases", Group: "coordination.k8s.io", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "delete", Resource: "volumeattachments", Group: "storage.k8s.io"}},
		// Repairs: not exercised by a healthy volume either.
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "leases", Group: "coordination.k8s.io", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "services", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "watch", Resource: "leases", Group: "coordination.k8s.io", Namespace: releaseNamespace}},
		{"nfs-server", authorizationv1.ResourceAttributes{Verb: "update", Resource: "leases", Group: "coordination.k8s.io", Namespace: releaseNamespace}},
		{"nfs-server", authorizationv1.ResourceAttributes{Verb: "create", Resource: "leases", Group: "coordination.k8s.io", Namespace: releaseNamespace}},
		// The client allowlist and its NetworkPolicy layer.
		{"nfs-server", authorizationv1.ResourceAttributes{Verb: "watch", Resource: "pods", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "create", Resource: "networkpolicies", Group: "networking.k8s.io", Namespace: releaseNamespace}},
		{"controller", authorizationv1.ResourceAttributes{Verb: "delete", Resource: "networkpolicies", Group: "networking.k8s.io", Namespace: releaseNamespace}},
	}
	can := func(user string, attr authorizationv1.ResourceAttributes) bool {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:" + releaseNamespace + ":sharewarden-" + user, ResourceAttributes: &attr,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	for _, d := range denied {
		if can(d.user, d.attr) {
			t.Errorf("%s may %s %s in %q: more than it needs", d.user, d.attr.Verb, d.attr.Resource, d.attr.Namespace)
		}
	}
	for _, a := range allowed {
		if !can(a.user, a.attr) {
			t.Errorf("%s may not %s %s in %q", a.user, a.attr.Verb, a.attr.Resource, a.attr.Namespace)
		}
	}
	// The viewer role is aggregated into view.
	fixture.WaitFor(t, ctx, 30*time.Second, "SharedVolumes readable with the view role", func() error {
		view, err := cs.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, r := range view.Rules {
			for _, res := range r.Resources {
				if res == "sharedvolumes" {
					return nil
				}
			}
		}
		return errors.New("view does not list sharedvolumes")
	})
}

// volumeIdentity is what must never change under a live volume: its claim's binding, the
// backing claim (the data), the PV and the Service's address.
func volumeIdentity(t *testing.T, ctx context.Context, c client.Client, claim *corev1.PersistentVolumeClaim) string {
	t.Helper()
	name := swv1.ObjectName(string(claim.UID))
	live, backing, pv, svc := &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolume{}, &corev1.Service{}
	for _, get := range []error{
		c.Get(ctx, client.ObjectKeyFromObject(claim), live),
		c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: name}, backing),
		c.Get(ctx, client.ObjectKey{Name: "pvc-" + string(claim.UID)}, pv),
		c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: name}, svc),
	} {
		if get != nil {
			return "missing: " + get.Error()
		}
	}
	return fmt.Sprintf("claim %s bound to %s (%s); backing claim %s deleting=%v; PV %s at %s; service %s at %s",
		live.UID, live.Spec.VolumeName, live.Status.Phase, backing.UID, backing.DeletionTimestamp != nil, pv.UID, pv.Spec.NFS.Server, svc.UID, svc.Spec.ClusterIP)
}

// localSchedulerConfig is the chart's KubeSchedulerConfiguration with the extender's URL and CA
// file swapped.
func localSchedulerConfig(t *testing.T, objs []*unstructured.Unstructured, url, caFile string) []byte {
	t.Helper()
	cm := convert[corev1.ConfigMap](t, mustFind(t, objs, "ConfigMap", "sharewarden-scheduler"))
	doc := map[string]any{}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &doc); err != nil {
		t.Fatal(err)
	}
	exts, _ := doc["extenders"].([]any)
	if len(exts) != 1 {
		t.Fatalf("scheduler config extenders: %v", doc["extenders"])
	}
	exts[0].(map[string]any)["urlPrefix"] = url
	exts[0].(map[string]any)["tlsConfig"] = map[string]any{"caFile": caFile}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func manifests(t *testing.T, objs []*unstructured.Unstructured) [][]byte {
	t.Helper()
	var out [][]byte
	for _, o := range objs {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// serviceAccountKubeconfig mints a token for the chart's ServiceAccount (TokenRequest, as
// admin) and writes a kubeconfig that uses it.
func serviceAccountKubeconfig(t *testing.T, ctx context.Context, plane *cluster.Cluster, sa string) string {
	t.Helper()
	tr, err := plane.Client().CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s: %v", sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: plane.APIServerURL(), CertificateAuthority: plane.CAFile()}
	cfg.AuthInfos[sa] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: sa}
	cfg.CurrentContext = "local"
	path := filepath.Join(workDir, sa+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// deploymentArgs returns the rendered Deployment's container arguments with the flags in
// override replaced (or added). Every rendered flag must be --name=value.
func deploymentArgs(t *testing.T, objs []*unstructured.Unstructured, name string, override map[string]string) []string {
	t.Helper()
	d := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", name))
	rendered := d.Spec.Template.Spec.Containers[0].Args
	out := []string{rendered[0]}
	seen := map[string]bool{}
	for _, a := range rendered[1:] {
		flag, _, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(flag, "--") {
			t.Fatalf("%s: argument %q is not --name=value", name, a)
		}
		if v, replace := override[flag]; replace {
			a = flag + "=" + v
			seen[flag] = true
		}
		out = append(out, a)
	}
	for flag, v := range override {
		if !seen[flag] {
			out = append(out, flag+"="+v)
		}
	}
	return out
}

type roleProc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan error
	stopped   bool
}

func startRole(t *testing.T, bin, name string, args []string) *roleProc {
	t.Helper()
	logPath := filepath.Join(workDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &roleProc{name: name, log: logPath, cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); _ = f.Close() }()
	t.Logf("%s: %s %s (log %s)", name, bin, strings.Join(args, " "), logPath)
	return p
}

// stop ends the role (once: later calls do nothing).
func (p *roleProc) stop(t *testing.T) {
	if p.stopped {
		return
	}
	p.stopped = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.done <- <-p.done
	}
	if t.Failed() {
		b, _ := os.ReadFile(p.log)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("%s log tail:\n%s", p.name, b)
	}
}

// forbidden returns the log lines where the apiserver refused the role.
func (p *roleProc) forbidden() string {
	b, _ := os.ReadFile(p.log)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "forbidden") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func (p *roleProc) exited() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v", p.name, err)
	default:
		return nil
	}
}

func waitOK(t *testing.T, ctx context.Context, p *roleProc, url string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The webhook's certificate is checked by the apiserver through the CA bundle; this
		// probe only waits for the listener.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec
	}}
	fixture.WaitFor(t, ctx, time.Minute, p.name+" ready at "+url, func() error {
		if err := p.exited(); err != nil {
			return fixture.GiveUp(err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
}

// waitWebhookCalled waits until the apiserver calls the webhook: a dry-run claim carrying a
// system annotation must be refused.
func waitWebhookCalled(t *testing.T, ctx context.Context, plane *cluster.Cluster) {
	t.Helper()
	probe := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Annotations: map[string]string{swv1.AnnotationBackingClaim: "probe"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	fixture.WaitFor(t, ctx, time.Minute, "the apiserver calling the webhook", func() error {
		_, err := plane.Client().CoreV1().PersistentVolumeClaims(metav1.NamespaceDefault).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), swv1.AnnotationBackingClaim) {
			return nil
		}
		return fmt.Errorf("not refused yet (%v)", err)
	})
}

// metricSum sums the samples of a metric scraped from url.
func metricSum(t *testing.T, ctx context.Context, url, name string) float64 {
	t.Helper()
	m, err := fixture.Scrape(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	return m.Sum(name, "")[""]
}

// installSnapshotCRDs applies the chart's crds/snapshot/ (upstream's VolumeSnapshot CRDs) and
// waits until they serve.
func installSnapshotCRDs(ctx context.Context, plane *cluster.Cluster) error {
	files, err := filepath.Glob(filepath.Join(chartDir, "crds", "snapshot", "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs under %s/crds/snapshot (err %v)", chartDir, err)
	}
	if _, err := plane.ApplyFiles(ctx, "", files...); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, err := plane.Client().Discovery().ServerResourcesForGroupVersion("snapshot.storage.k8s.io/v1")
		return err == nil, nil
	})
}

// controllerHasFlag tells whether `sharewarden controller` has the flag.
// chartWithoutKubeVersion copies the chart and drops its kubeVersion constraint.
func chartWithoutKubeVersion(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sharewarden")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(dir, "Chart.yaml")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	lines := slices.DeleteFunc(strings.Split(string(b), "\n"), func(l string) bool { return strings.HasPrefix(l, "kubeVersion:") })
	if err := os.WriteFile(meta, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
