package chart_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/webhookrun"
	"github.com/sharewarden/sharewarden/webhook"
)

var ciFiles = []string{"default-values.yaml", "scheduler-values.yaml", "certmanager-values.yaml", "resources-values.yaml", "csi-values.yaml", "legacy-values.yaml"}

func convert[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", o.GetKind(), o.GetName(), err)
	}
	return out
}

// TestLint: helm lint --strict passes with every ci/ values file, and fails on a bad one (so
// the lint is really checking).
func TestLint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, f := range ciFiles {
		if out, err := helm(ctx, "lint", "--strict", chartDir, "--namespace", releaseNamespace, "-f", ciValues(f)); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
	if _, err := helm(ctx, "lint", "--strict", chartDir, "--set", "webhook.replicas=many"); err == nil {
		t.Error("helm lint accepted webhook.replicas=many")
	}
}

// TestTemplateHardening: with every ci/ values file, every Deployment runs non-root with a
// read-only root filesystem, no capabilities, RuntimeDefault seccomp, probes and resource
// requests, and has a PodDisruptionBudget that selects its pods and allows a drain.
func TestTemplateHardening(t *testing.T) {
	for _, f := range ciFiles {
		t.Run(f, func(t *testing.T) {
			objs := render(t, "-f", ciValues(f))
			deps := fixture.OfKind(objs, "Deployment")
			if len(deps) < 2 {
				t.Fatalf("only %d Deployments rendered", len(deps))
			}
			pdbs := fixture.OfKind(objs, "PodDisruptionBudget")
			for _, o := range deps {
				d := convert[appsv1.Deployment](t, o)
				spec := d.Spec.Template.Spec
				psc := spec.SecurityContext
				if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("%s: pod security context %+v", d.Name, psc)
				}
				if spec.ServiceAccountName == "" || spec.ServiceAccountName == "default" {
					t.Errorf("%s: runs as service account %q", d.Name, spec.ServiceAccountName)
				}
				if fixture.FindObject(objs, "ServiceAccount", spec.ServiceAccountName) == nil {
					t.Errorf("%s: service account %s is not in the chart", d.Name, spec.ServiceAccountName)
				}
				for _, c := range spec.Containers {
					sc := c.SecurityContext
					if sc == nil || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) || ptr.Deref(sc.AllowPrivilegeEscalation, true) ||
						sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
						t.Errorf("%s/%s: container security context %+v", d.Name, c.Name, sc)
					}
					if c.LivenessProbe == nil || c.ReadinessProbe == nil {
						t.Errorf("%s/%s: probes missing", d.Name, c.Name)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
						t.Errorf("%s/%s: no cpu/memory requests: %+v", d.Name, c.Name, c.Resources)
					}
				}
				if ptr.Deref(d.Spec.Replicas, 1) < 2 {
					t.Errorf("%s: %d replicas, want at least 2", d.Name, ptr.Deref(d.Spec.Replicas, 1))
				}
				covered := false
				for _, p := range pdbs {
					pdb := convert[policyv1.PodDisruptionBudget](t, p)
					sel, err := labels.Parse(labels.Set(pdb.Spec.Selector.MatchLabels).String())
					if err != nil {
						t.Fatal(err)
					}
					if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						covered = true
						if pdb.Spec.MinAvailable.IntValue() >= int(ptr.Deref(d.Spec.Replicas, 1)) {
							t.Errorf("%s: PDB minAvailable %s blocks every drain", d.Name, pdb.Spec.MinAvailable.String())
						}
					}
				}
				if !covered {
					t.Errorf("%s: no PodDisruptionBudget selects its pods", d.Name)
				}
			}
		})
	}
}

func containerArgs(t *testing.T, objs []*unstructured.Unstructured, name string) []string {
	t.Helper()
	d := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", name))
	c := d.Spec.Template.Spec.Containers[0]
	return append(slices.Clone(c.Command), c.Args...)
}

func hasArg(args []string, want string) bool { return slices.Contains(args, want) }

// TestTemplateVariants: what each ci/ values file is for shows in the rendered objects.
func TestTemplateVariants(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		objs := render(t, "-f", ciValues("default-values.yaml"))
		ctl := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", "sharewarden-controller"))
		if *ctl.Spec.Replicas != 2 || !hasArg(ctl.Spec.Template.Spec.Containers[0].Args, "--leader-elect=true") {
			t.Errorf("controller: %d replicas, args %v", *ctl.Spec.Replicas, ctl.Spec.Template.Spec.Containers[0].Args)
		}
		args := containerArgs(t, objs, "sharewarden-controller")
		for _, want := range []string{"--server-image=ghcr.io/sharewarden/sharewarden-nfs-server:0.1.0", "--server-service-account=sharewarden-nfs-server", "--namespace=" + releaseNamespace} {
			if !hasArg(args, want) {
				t.Errorf("controller args %v lack %s", args, want)
			}
		}
		// The half-built option to put backing objects in tenant namespaces is gone.
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--backing-in-claim-namespace") }) {
			t.Errorf("controller args %v pass the removed --backing-in-claim-namespace", args)
		}
		wargs := containerArgs(t, objs, "sharewarden-webhook")
		if !hasArg(wargs, "--system-users=system:serviceaccount:"+releaseNamespace+":sharewarden-controller") || slices.ContainsFunc(wargs, func(a string) bool { return strings.HasPrefix(a, "--scheduler-name") }) {
			t.Errorf("webhook args %v", wargs)
		}
		sc := convert[storagev1.StorageClass](t, mustFind(t, objs, "StorageClass", swv1.DefaultManagedStorageClass))
		if sc.Provisioner != swv1.CSIDriverName || !ptr.Deref(sc.AllowVolumeExpansion, false) || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete || len(sc.Parameters) != 0 {
			t.Errorf("managed class %+v", sc)
		}
		secret := convert[corev1.Secret](t, mustFind(t, objs, "Secret", "sharewarden-webhook-tls"))
		ext := convert[corev1.Secret](t, mustFind(t, objs, "Secret", "sharewarden-extender-tls"))
		if string(ext.Data["ca.crt"]) != string(secret.Data["ca.crt"]) || string(ext.Data["tls.crt"]) == string(secret.Data["tls.crt"]) {
			t.Error("webhook and extender certificates must be distinct and signed by one CA")
		}
		mwc := convert[admissionregistrationv1.MutatingWebhookConfiguration](t, mustFind(t, objs, "MutatingWebhookConfiguration", "sharewarden"))
		for _, w := range mwc.Webhooks {
			if string(w.ClientConfig.CABundle) != string(secret.Data["ca.crt"]) || len(w.ClientConfig.CABundle) == 0 {
				t.Errorf("%s: CA bundle is not the generated CA", w.Name)
			}
		}
		if fixture.FindObject(objs, "Deployment", "sharewarden-scheduler") != nil || fixture.FindObject(objs, "Certificate", "sharewarden-webhook") != nil {
			t.Error("defaults render a second scheduler or a cert-manager Certificate")
		}
	})
	t.Run("second scheduler", func(t *testing.T) {
		objs := render(t, "-f", ciValues("scheduler-values.yaml"))
		args := containerArgs(t, objs, "sharewarden-scheduler")
		d := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", "sharewarden-scheduler"))
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "registry.k8s.io/kube-scheduler:v1.37.2" {
			t.Errorf("scheduler image %s", img)
		}
		if !hasArg(args, "--config=/etc/kubernetes/sharewarden-scheduler/config.yaml") {
			t.Errorf("scheduler command %v", args)
		}
		if wargs := containerArgs(t, objs, "sharewarden-webhook"); !hasArg(wargs, "--scheduler-name=sharewarden-scheduler") || !hasArg(wargs, "--server-scheduler-name=sharewarden-server-scheduler") {
			t.Errorf("webhook does not hand consumers and servers to the second scheduler's profiles: %v", wargs)
		}
		// The configuration is deploy/scheduler's second scheduler, as shipped.
		sameAsShipped(t, objs, "second-scheduler-config.yaml")
		if !hasVolumeFromSecret(d, "sharewarden-extender-tls") {
			t.Error("the scheduler does not mount the extender's CA")
		}
		for _, r := range []string{"system:kube-scheduler", "system:volume-scheduler"} {
			found := false
			for _, o := range fixture.OfKind(objs, "ClusterRoleBinding") {
				b := convert[rbacv1.ClusterRoleBinding](t, o)
				found = found || (b.RoleRef.Name == r && b.Subjects[0].Name == "sharewarden-scheduler")
			}
			if !found {
				t.Errorf("second scheduler not bound to %s", r)
			}
		}
	})
	t.Run("second scheduler, plugin build", func(t *testing.T) {
		objs := render(t, "-f", ciValues("scheduler-plugin-values.yaml"))
		d := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", "sharewarden-scheduler"))
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/sharewarden/kube-scheduler-sharewarden:0.1.0" {
			t.Errorf("plugin scheduler image %s, want kube-scheduler-sharewarden at the appVersion", img)
		}
		if hasVolumeFromSecret(d, "sharewarden-extender-tls") || fixture.FindObject(objs, "Deployment", "sharewarden-extender") != nil {
			t.Error("the plugin build needs no extender, nor its CA")
		}
		// The configuration is deploy/scheduler's plugin build, as shipped.
		sameAsShipped(t, objs, "plugin-scheduler-config.yaml")
		found := false
		for _, o := range fixture.OfKind(objs, "ClusterRoleBinding") {
			b := convert[rbacv1.ClusterRoleBinding](t, o)
			found = found || (b.RoleRef.Name == "sharewarden-sharedvolume-viewer" && b.Subjects[0].Name == "sharewarden-scheduler")
		}
		if !found {
			t.Error("the plugin build may not read SharedVolumes")
		}
		// Mode extender without the extender is refused; mode plugin without it is not (above).
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := helm(ctx, "template", releaseName, chartDir, "-f", ciValues("scheduler-plugin-values.yaml"), "--set", "scheduler.mode=extender"); err == nil || !strings.Contains(err.Error(), "extender.enabled is false") {
			t.Errorf("mode extender without the extender: %v, want the chart's refusal", err)
		}
		if _, err := helm(ctx, "template", releaseName, chartDir, "--set", "scheduler.mode=plugins"); err == nil || !strings.Contains(err.Error(), "mode") {
			t.Errorf("scheduler.mode=plugins: %v, want the schema's refusal", err)
		}
	})
	t.Run("cert-manager", func(t *testing.T) {
		objs := render(t, "-f", ciValues("certmanager-values.yaml"))
		cert := mustFind(t, objs, "Certificate", "sharewarden-webhook")
		if s, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName"); s != "sharewarden-webhook-tls" {
			t.Errorf("certificate secret %q", s)
		}
		if k, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "kind"); k != "ClusterIssuer" {
			t.Errorf("issuer kind %q", k)
		}
		mustFind(t, objs, "Certificate", "sharewarden-extender")
		if fixture.FindObject(objs, "Secret", "sharewarden-webhook-tls") != nil || fixture.FindObject(objs, "Secret", "sharewarden-extender-tls") != nil || fixture.FindObject(objs, "Issuer", "sharewarden-ca") != nil {
			t.Error("with cert-manager and an issuer, the chart must not make its own Secrets or CA")
		}
		mwc := convert[admissionregistrationv1.MutatingWebhookConfiguration](t, mustFind(t, objs, "MutatingWebhookConfiguration", "sharewarden"))
		if mwc.Annotations["cert-manager.io/inject-ca-from"] != releaseNamespace+"/sharewarden-webhook" {
			t.Errorf("annotations %v", mwc.Annotations)
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) != 0 {
				t.Errorf("%s carries a CA bundle cert-manager would fight over", w.Name)
			}
		}
		// Without an issuer the chart bootstraps its own CA through cert-manager.
		own := render(t, "--set", "certManager.enabled=true")
		mustFind(t, own, "Issuer", "sharewarden-selfsigned")
		mustFind(t, own, "Issuer", "sharewarden-ca")
	})
	t.Run("custom resources", func(t *testing.T) {
		objs := render(t, "-f", ciValues("resources-values.yaml"))
		d := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", "sharewarden-controller"))
		c := d.Spec.Template.Spec.Containers[0]
		if c.Resources.Requests.Cpu().String() != "200m" || c.Resources.Limits.Memory().String() != "1Gi" ||
			d.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" || len(d.Spec.Template.Spec.Tolerations) != 1 || *d.Spec.Replicas != 3 {
			t.Errorf("controller spec %+v", d.Spec.Template.Spec)
		}
		if c.Image != "registry.example.com/sharewarden:v0.1.0" || c.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("image %s %s", c.Image, c.ImagePullPolicy)
		}
		if fixture.FindObject(objs, "Deployment", "sharewarden-extender") != nil {
			t.Error("extender rendered with extender.enabled=false")
		}
		sa := convert[corev1.ServiceAccount](t, mustFind(t, objs, "ServiceAccount", "sharewarden-nfs-server"))
		if len(sa.ImagePullSecrets) != 1 || sa.ImagePullSecrets[0].Name != "regcred" {
			t.Errorf("nfs-server service account pull secrets %v", sa.ImagePullSecrets)
		}
		sc := convert[storagev1.StorageClass](t, mustFind(t, objs, "StorageClass", swv1.DefaultManagedStorageClass))
		want := map[string]string{
			"backingStorageClass": "fast-rwo", "server.cpu": "200m", "server.memory": "256Mi", "server.memoryLimit": "1Gi",
			"server.nodeSelector": "disktype=ssd", "server.priorityClassName": "system-node-critical", "server.squash": "all",
			"server.anonymousUID": "1000", "server.anonymousGID": "1000", "server.clientAllowlist": "off",
			"server.tolerations": `[{"effect":"NoSchedule","key":"storage","operator":"Equal","value":"true"}]`,
		}
		if !reflect.DeepEqual(sc.Parameters, want) || *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || !slices.Equal(sc.MountOptions, []string{"nfsvers=4.2", "hard"}) {
			t.Errorf("managed class: parameters %v, reclaim %s, mount options %v", sc.Parameters, *sc.ReclaimPolicy, sc.MountOptions)
		}
		args := containerArgs(t, objs, "sharewarden-controller")
		if !hasArg(args, "--server-extra-arg=--grace=30s") || !hasArg(args, "--server-image-pull-policy=Always") || !hasArg(args, "--network-policy=true") {
			t.Errorf("controller args %v", args)
		}
	})
}

func hasVolumeFromSecret(d *appsv1.Deployment, secret string) bool {
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret {
			return true
		}
	}
	return false
}

// TestWebhookConfigurationMatchesWebhookrun: the chart's MutatingWebhookConfiguration has the
// rules, selectors, matchConditions, failure policies and timeouts test/webhookrun registers
// (which the webhook's e2e tests prove), only the client config differs.
func TestWebhookConfigurationMatchesWebhookrun(t *testing.T) {
	objs := render(t)
	got := convert[admissionregistrationv1.MutatingWebhookConfiguration](t, mustFind(t, objs, "MutatingWebhookConfiguration", "sharewarden"))
	cfg := webhook.NewOptions().Config
	cfg.SystemNamespace = releaseNamespace
	want := webhookrun.Configuration("sharewarden", "https://unused", nil, cfg)
	if len(got.Webhooks) != len(want.Webhooks) {
		t.Fatalf("%d webhooks, want %d", len(got.Webhooks), len(want.Webhooks))
	}
	for i := range want.Webhooks {
		g, w := got.Webhooks[i], want.Webhooks[i]
		if g.ClientConfig.Service == nil || g.ClientConfig.Service.Name != "sharewarden-webhook" || g.ClientConfig.Service.Namespace != releaseNamespace ||
			"https://unused"+ptr.Deref(g.ClientConfig.Service.Path, "") != ptr.Deref(w.ClientConfig.URL, "") {
			t.Errorf("%s: client config %+v", g.Name, g.ClientConfig.Service)
		}
		g.ClientConfig, w.ClientConfig = admissionregistrationv1.WebhookClientConfig{}, admissionregistrationv1.WebhookClientConfig{}
		if gj, wj := mustJSON(t, g), mustJSON(t, w); gj != wj {
			t.Errorf("webhook %d differs from test/webhookrun's:\nchart:      %s\nwebhookrun: %s", i, gj, wj)
		}
	}
	// By default the claims webhook fails closed, the pod webhooks open.
	policies := func(mwc *admissionregistrationv1.MutatingWebhookConfiguration) map[string]admissionregistrationv1.FailurePolicyType {
		out := map[string]admissionregistrationv1.FailurePolicyType{}
		for _, w := range mwc.Webhooks {
			out[w.Name] = ptr.Deref(w.FailurePolicy, "")
		}
		return out
	}
	want1 := map[string]admissionregistrationv1.FailurePolicyType{
		webhookrun.ClaimsWebhook: admissionregistrationv1.Fail, webhookrun.PodsWebhook: admissionregistrationv1.Ignore, webhookrun.ServersWebhook: admissionregistrationv1.Ignore,
	}
	if p := policies(got); !reflect.DeepEqual(p, want1) {
		t.Errorf("default failure policies %v, want %v", p, want1)
	}
	// The knobs reach their webhooks; the servers webhook always fails open (a failover never
	// waits on the webhook).
	objs = render(t, "--set", "webhook.failurePolicy.claims=Ignore", "--set", "webhook.failurePolicy.pods=Fail", "--set", "webhook.timeoutSeconds=10")
	got = convert[admissionregistrationv1.MutatingWebhookConfiguration](t, mustFind(t, objs, "MutatingWebhookConfiguration", "sharewarden"))
	want2 := map[string]admissionregistrationv1.FailurePolicyType{
		webhookrun.ClaimsWebhook: admissionregistrationv1.Ignore, webhookrun.PodsWebhook: admissionregistrationv1.Fail, webhookrun.ServersWebhook: admissionregistrationv1.Ignore,
	}
	if p := policies(got); !reflect.DeepEqual(p, want2) {
		t.Errorf("failure policies %v, want %v", p, want2)
	}
	for _, w := range got.Webhooks {
		if *w.TimeoutSeconds != 10 {
			t.Errorf("%s: timeout %d", w.Name, *w.TimeoutSeconds)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadValues: wrong types, unknown keys and conflicting options fail the install with a
// message that names the problem.
func TestBadValues(t *testing.T) {
	cases := []struct {
		name, values string
		want         []string
	}{
		{"wrong type", "controller:\n  replicas: two\n", []string{"/controller/replicas", "want integer"}},
		{"wrong type in a list", "imagePullSecrets: [1]\n", []string{"/imagePullSecrets/0", "want string"}},
		{"unknown top-level key", "contoller:\n  replicas: 1\n", []string{"additional properties 'contoller' not allowed"}},
		{"unknown nested key", "tls:\n  certFile: x\n", []string{"at '/tls'", "additional properties 'certFile' not allowed"}},
		{"bad enum", "webhook:\n  failurePolicy:\n    claims: Retry\n", []string{"/webhook/failurePolicy/claims"}},
		{"one failure policy for all webhooks (the old shape)", "webhook:\n  failurePolicy: Ignore\n", []string{"/webhook/failurePolicy", "want object"}},
		{"failure policy removed", "webhook:\n  failurePolicy:\n    pods: null\n", []string{"/webhook/failurePolicy", "'pods'"}},
		{"failure policy of the servers webhook", "webhook:\n  failurePolicy:\n    servers: Fail\n", []string{"additional properties 'servers' not allowed"}},
		{"bad quantity", "storageClass:\n  server:\n    memory: lots\n", []string{"/storageClass/server/memory"}},
		{"health port on NFS port", "nfsServer:\n  healthPort: 2049\n", []string{"/nfsServer/healthPort"}},
		{"replicas without leader election", "controller:\n  leaderElect: false\n", []string{"controller.leaderElect is false", "set controller.leaderElect=true or controller.replicas=1"}},
		{"second scheduler without extender", "scheduler:\n  enabled: true\nextender:\n  enabled: false\n", []string{"scheduler.enabled is true with scheduler.mode extender but extender.enabled is false"}},
		{"issuer without cert-manager", "certManager:\n  issuerRef:\n    name: ca\n", []string{"certManager.issuerRef.name", "certManager.enabled is false"}},
		{"managed class backs itself", "storageClass:\n  backingStorageClass: sharewarden-nfs\n", []string{"the managed class itself"}},
		{"budget blocks drains", "webhook:\n  podDisruptionBudget:\n    minAvailable: 2\n", []string{"webhook.podDisruptionBudget.minAvailable (2) must be below webhook.replicas (2)"}},
		{"removed backingInClaimNamespace", "controller:\n  backingInClaimNamespace: false\n", []string{"additional properties 'backingInClaimNamespace' not allowed"}},
		{"scheduler named default", "scheduler:\n  enabled: true\n  name: default-scheduler\n", []string{"must not take the default scheduler's name"}},
		{"unknown class provisioner", "storageClass:\n  provisioner: intree\n", []string{"/storageClass/provisioner"}},
		{"CSI class without the CSI driver", "csi:\n  enabled: false\n", []string{"storageClass.provisioner is csi but csi.enabled is false", "set storageClass.provisioner=legacy"}},
		{"snapshot class on the legacy class", "storageClass:\n  provisioner: legacy\n  snapshotClass: fast-snaps\n", []string{"storageClass.snapshotClass", "legacy sharewarden.io/nfs, which takes no snapshots"}},
		{"sidecar port taken by the controller", "csi:\n  controller:\n    resizer:\n      httpPort: 8080\n", []string{"csi.controller.resizer.httpPort is 8080, as controller.metricsPort"}},
		{"two sidecars on one port", "csi:\n  controller:\n    snapshotter:\n      httpPort: 8090\n", []string{"csi.controller.snapshotter.httpPort is 8090, as csi.controller.provisioner.httpPort"}},
		{"node ports collide", "csi:\n  node:\n    livenessProbe:\n      port: 19819\n", []string{"csi.node.livenessProbe.port and csi.node.registrar.healthPort are both 19819"}},
		{"sidecar image without a tag", "csi:\n  controller:\n    provisioner:\n      image:\n        tag: \"\"\n", []string{"/csi/controller/provisioner/image/tag"}},
		{"bad feature gates", "csi:\n  controller:\n    provisioner:\n      featureGates: VolumeAttributesClass\n", []string{"/csi/controller/provisioner/featureGates"}},
		{"bad sidecar timeout", "csi:\n  controller:\n    provisioner:\n      timeout: 2 minutes\n", []string{"/csi/controller/provisioner/timeout"}},
		{"relative kubelet directory", "csi:\n  kubeletDir: var/lib/kubelet\n", []string{"/csi/kubeletDir"}},
		{"bad snapshot deletion policy", "csi:\n  snapshots:\n    volumeSnapshotClass:\n      deletionPolicy: Recycle\n", []string{"/csi/snapshots/volumeSnapshotClass/deletionPolicy"}},
		{"unknown CSI key", "csi:\n  attacher: {}\n", []string{"at '/csi'", "additional properties 'attacher' not allowed"}},
		{"snapshot-controller budget blocks drains", "snapshotController:\n  enabled: true\n  replicas: 1\n", []string{"snapshotController.podDisruptionBudget.minAvailable (1) must be below snapshotController.replicas (1)"}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(f, []byte(tc.values), 0o644); err != nil {
				t.Fatal(err)
			}
			// helm template validates and renders exactly as helm install does, without a cluster.
			_, err := helm(ctx, "template", releaseName, chartDir, "--namespace", releaseNamespace, "-f", f)
			if err == nil {
				t.Fatalf("case %d: install accepted:\n%s", i, tc.values)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestSchemaMatchesValues: every key of values.yaml is in values.schema.json and every schema
// property is in values.yaml, so neither drifts (helm lint only checks the first direction).
func TestSchemaMatchesValues(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	sraw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(sraw, &schema); err != nil {
		t.Fatal(err)
	}
	defs, _ := schema["$defs"].(map[string]any)
	// Shared definitions ($defs: resources, affinity...) may list more keys than a value uses.
	resolve := func(s map[string]any) (map[string]any, bool) {
		shared := false
		for {
			ref, ok := s["$ref"].(string)
			if !ok {
				return s, shared
			}
			s, _ = defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
			shared = true
		}
	}
	var walk func(path string, v any, s map[string]any)
	walk = func(path string, v any, s map[string]any) {
		s, shared := resolve(s)
		if s == nil {
			t.Errorf("%s: no schema", path)
			return
		}
		m, isMap := v.(map[string]any)
		props, hasProps := s["properties"].(map[string]any)
		if !isMap || !hasProps {
			return // a leaf, or a free-form map (labels, selectors) typed by additionalProperties
		}
		if s["additionalProperties"] != false {
			t.Errorf("%s: schema allows unknown keys", path)
		}
		for k, sub := range props {
			if _, ok := m[k]; !ok {
				if !shared {
					t.Errorf("%s.%s is in the schema but not in values.yaml", path, k)
				}
				continue
			}
			subm, _ := sub.(map[string]any)
			walk(path+"."+k, m[k], subm)
		}
		for k := range m {
			if _, ok := props[k]; !ok {
				t.Errorf("%s.%s is in values.yaml but not in the schema", path, k)
			}
		}
	}
	walk("", values, schema)
}

// TestValuesReferenceCurrent: docs/values.md is what hack/values-doc.sh generates from
// values.yaml, and every value is documented.
func TestValuesReferenceCurrent(t *testing.T) {
	cmd := exec.Command(filepath.Join(root, "hack", "values-doc.sh"), "--verify")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

// sameAsShipped checks that the rendered second scheduler's configuration is
// deploy/scheduler/<file>, as shipped.
func sameAsShipped(t *testing.T, objs []*unstructured.Unstructured, file string) {
	t.Helper()
	cm := convert[corev1.ConfigMap](t, mustFind(t, objs, "ConfigMap", "sharewarden-scheduler"))
	var got, want map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &got); err != nil {
		t.Fatalf("scheduler config: %v", err)
	}
	shipped, err := os.ReadFile(filepath.Join(root, "deploy", "scheduler", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(shipped, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the chart's scheduler config differs from deploy/scheduler/%s:\nchart:   %s\nshipped: %s", file, mustJSON(t, got), mustJSON(t, want))
	}
}
