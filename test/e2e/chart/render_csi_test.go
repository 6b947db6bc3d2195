package chart_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// TestTemplateCSIDriver: the CSIDriver object says how kubelet treats ShareWarden volumes; with
// csi.enabled=false there is no driver at all.
func TestTemplateCSIDriver(t *testing.T) {
	objs := render(t)
	d := convert[storagev1.CSIDriver](t, mustFind(t, objs, "CSIDriver", swv1.CSIDriverName))
	s := d.Spec
	if ptr.Deref(s.AttachRequired, true) || !ptr.Deref(s.PodInfoOnMount, false) || ptr.Deref(s.FSGroupPolicy, "") != storagev1.FileFSGroupPolicy ||
		!ptr.Deref(s.SELinuxMount, false) || ptr.Deref(s.RequiresRepublish, true) ||
		!slices.Equal(s.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}) {
		t.Errorf("CSIDriver spec %s", mustJSON(t, s))
	}
	off := render(t, "-f", ciValues("legacy-values.yaml"))
	for _, kind := range []string{"CSIDriver", "DaemonSet", "VolumeSnapshotClass"} {
		if got := fixture.OfKind(off, kind); len(got) != 0 {
			t.Errorf("csi.enabled=false renders a %s", kind)
		}
	}
	for _, name := range []string{"sharewarden-csi-provisioner", "sharewarden-csi-resizer", "sharewarden-csi-snapshotter"} {
		if fixture.FindObject(off, "ClusterRole", name) != nil {
			t.Errorf("csi.enabled=false renders ClusterRole %s", name)
		}
	}
	ctl := convert[appsv1.Deployment](t, mustFind(t, off, "Deployment", "sharewarden-controller"))
	if n := len(ctl.Spec.Template.Spec.Containers); n != 1 || slices.ContainsFunc(ctl.Spec.Template.Spec.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--csi-endpoint") }) {
		t.Errorf("csi.enabled=false: controller has %d containers, args %v", n, ctl.Spec.Template.Spec.Containers[0].Args)
	}
	if sc := convert[storagev1.StorageClass](t, mustFind(t, off, "StorageClass", swv1.DefaultManagedStorageClass)); sc.Provisioner != swv1.Provisioner {
		t.Errorf("legacy class provisioner %s", sc.Provisioner)
	}
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s in %v", name, containerNames(spec))
	return corev1.Container{}
}

func containerNames(spec corev1.PodSpec) []string {
	var out []string
	for _, c := range spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

func volume(t *testing.T, spec corev1.PodSpec, name string) corev1.Volume {
	t.Helper()
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

func mount(c corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// TestTemplateCSINode: the node plugin DaemonSet runs on every node in the host's network; only
// the plugin container is privileged, and only it mounts the pods directory, at kubelet's own
// path with Bidirectional propagation; the registrar registers the plugin's host socket path.
func TestTemplateCSINode(t *testing.T) {
	for _, tc := range []struct {
		file, kubelet string
		probe         bool
	}{
		{"default-values.yaml", "/var/lib/kubelet", true},
		{"csi-values.yaml", "/var/lib/k0s/kubelet", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			objs := render(t, "-f", ciValues(tc.file))
			ds := convert[appsv1.DaemonSet](t, mustFind(t, objs, "DaemonSet", "sharewarden-csi-node"))
			spec := ds.Spec.Template.Spec
			pluginDir := tc.kubelet + "/plugins/" + swv1.CSIDriverName
			if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet || spec.PriorityClassName != "system-node-critical" ||
				!slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool { return tol.Operator == corev1.TolerationOpExists && tol.Key == "" }) ||
				spec.NodeSelector[corev1.LabelOSStable] != "linux" {
				t.Errorf("node pod spec: hostNetwork %v dns %s priority %q tolerations %v nodeSelector %v", spec.HostNetwork, spec.DNSPolicy, spec.PriorityClassName, spec.Tolerations, spec.NodeSelector)
			}
			want := []string{"csi-node", "node-driver-registrar"}
			if tc.probe {
				want = append(want, "liveness-probe")
			}
			if got := containerNames(spec); !slices.Equal(got, want) {
				t.Errorf("containers %v, want %v", got, want)
			}
			for _, c := range spec.Containers {
				privileged := c.SecurityContext != nil && ptr.Deref(c.SecurityContext.Privileged, false)
				if privileged != (c.Name == "csi-node") {
					t.Errorf("%s: privileged %v", c.Name, privileged)
				}
				if c.Name != "csi-node" && (!ptr.Deref(c.SecurityContext.ReadOnlyRootFilesystem, false) || c.SecurityContext.Capabilities == nil ||
					!slices.Equal(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"})) {
					t.Errorf("%s: security context %+v", c.Name, c.SecurityContext)
				}
				if m := mount(c, "pods-dir"); (m != nil) != (c.Name == "csi-node") {
					t.Errorf("%s mounts the pods directory: %v", c.Name, m)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
					t.Errorf("%s: no requests", c.Name)
				}
			}
			plugin := container(t, spec, "csi-node")
			if m := mount(plugin, "pods-dir"); m == nil || m.MountPath != tc.kubelet+"/pods" || ptr.Deref(m.MountPropagation, "") != corev1.MountPropagationBidirectional {
				t.Errorf("plugin's pods mount %+v", m)
			}
			if v := volume(t, spec, "pods-dir"); v.HostPath == nil || v.HostPath.Path != tc.kubelet+"/pods" || ptr.Deref(v.HostPath.Type, "") != corev1.HostPathDirectory {
				t.Errorf("pods volume %+v", v.HostPath)
			}
			if v := volume(t, spec, "plugin-dir"); v.HostPath == nil || v.HostPath.Path != pluginDir || ptr.Deref(v.HostPath.Type, "") != corev1.HostPathDirectoryOrCreate {
				t.Errorf("plugin volume %+v", v.HostPath)
			}
			if v := volume(t, spec, "registration-dir"); v.HostPath == nil || v.HostPath.Path != tc.kubelet+"/plugins_registry" {
				t.Errorf("registration volume %+v", v.HostPath)
			}
			if m := mount(plugin, "plugin-dir"); m == nil || m.MountPath != "/csi" {
				t.Errorf("plugin socket mount %+v", m)
			}
			args := append(slices.Clone(plugin.Command), plugin.Args...)
			if !slices.Equal(args[:3], []string{"csi-node", "--endpoint=unix:///csi/csi.sock", "--node-name=$(NODE_NAME)"}) {
				t.Errorf("plugin args %v", args)
			}
			if len(plugin.Env) != 1 || plugin.Env[0].Name != "NODE_NAME" || plugin.Env[0].ValueFrom == nil || plugin.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("plugin env %+v", plugin.Env)
			}
			if plugin.Image != "ghcr.io/sharewarden/sharewarden-csi-node:0.1.0" {
				t.Errorf("plugin image %s", plugin.Image)
			}
			if (plugin.LivenessProbe != nil) != tc.probe {
				t.Errorf("plugin liveness probe %+v with the livenessprobe sidecar %v", plugin.LivenessProbe, tc.probe)
			}
			reg := container(t, spec, "node-driver-registrar")
			if !hasArg(reg.Args, "--kubelet-registration-path="+pluginDir+"/csi.sock") || !hasArg(reg.Args, "--csi-address=/csi/csi.sock") ||
				!strings.HasPrefix(reg.Image, "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.") {
				t.Errorf("registrar %s %v", reg.Image, reg.Args)
			}
			if m := mount(reg, "registration-dir"); m == nil || m.MountPath != "/registration" {
				t.Errorf("registrar's registration mount %+v", m)
			}
			// No API access: no token, no role bound to the account.
			sa := convert[corev1.ServiceAccount](t, mustFind(t, objs, "ServiceAccount", spec.ServiceAccountName))
			if ptr.Deref(sa.AutomountServiceAccountToken, true) || ptr.Deref(spec.AutomountServiceAccountToken, true) {
				t.Error("the node plugin mounts a service account token")
			}
			for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
				for _, o := range fixture.OfKind(objs, kind) {
					for _, s := range convert[rbacv1.RoleBinding](t, o).Subjects {
						if s.Name == spec.ServiceAccountName {
							t.Errorf("%s %s binds the node plugin", kind, o.GetName())
						}
					}
				}
			}
		})
	}
}

// TestTemplateCSIControllerSidecars: the controller serves CSI on a socket in an emptyDir that
// its sidecars share; csi-provisioner names PVs pvc-<claim uid> and passes the claim's metadata
// (ShareWarden relies on both); the sidecars elect leaders as the controller does.
func TestTemplateCSIControllerSidecars(t *testing.T) {
	objs := render(t)
	d := convert[appsv1.Deployment](t, mustFind(t, objs, "Deployment", "sharewarden-controller"))
	spec := d.Spec.Template.Spec
	if got, want := containerNames(spec), []string{"controller", "csi-provisioner", "csi-resizer", "csi-snapshotter"}; !slices.Equal(got, want) {
		t.Fatalf("controller pod containers %v, want %v", got, want)
	}
	if v := volume(t, spec, "csi-socket"); v.EmptyDir == nil {
		t.Errorf("socket volume %+v", v)
	}
	for _, c := range spec.Containers {
		if m := mount(c, "csi-socket"); m == nil || m.MountPath != "/csi" {
			t.Errorf("%s: socket mount %+v", c.Name, m)
		}
		if c.Name == "controller" {
			continue
		}
		for _, want := range []string{"--csi-address=/csi/csi.sock", "--leader-election=true", "--leader-election-namespace=" + releaseNamespace, "--v=2"} {
			if !hasArg(c.Args, want) {
				t.Errorf("%s args %v lack %s", c.Name, c.Args, want)
			}
		}
		if c.LivenessProbe.HTTPGet.Path != "/healthz/leader-election" || !strings.HasPrefix(c.Image, "registry.k8s.io/sig-storage/"+c.Name+":v") {
			t.Errorf("%s: image %s, liveness %+v", c.Name, c.Image, c.LivenessProbe.HTTPGet)
		}
	}
	if !hasArg(container(t, spec, "controller").Args, "--csi-endpoint=unix:///csi/csi.sock") {
		t.Errorf("controller args %v", container(t, spec, "controller").Args)
	}
	prov := container(t, spec, "csi-provisioner")
	for _, want := range []string{"--extra-create-metadata", "--volume-name-prefix=pvc", "--default-fstype=", "--timeout=120s", "--worker-threads=100", "--kube-api-qps=50", "--kube-api-burst=100", "--http-endpoint=:8090"} {
		if !hasArg(prov.Args, want) {
			t.Errorf("csi-provisioner args %v lack %s", prov.Args, want)
		}
	}
	if slices.ContainsFunc(prov.Args, func(a string) bool {
		return strings.HasPrefix(a, "--volume-name-uuid-length") || strings.HasPrefix(a, "--feature-gates")
	}) {
		t.Errorf("csi-provisioner args %v: PV names must stay pvc-<claim uid>, no feature gates by default", prov.Args)
	}
	if r := container(t, spec, "csi-resizer"); !hasArg(r.Args, "--timeout=120s") || !hasArg(r.Args, "--workers=10") {
		t.Errorf("csi-resizer args %v", r.Args)
	}
	if s := container(t, spec, "csi-snapshotter"); !hasArg(s.Args, "--extra-create-metadata") || !hasArg(s.Args, "--worker-threads=10") {
		t.Errorf("csi-snapshotter args %v", s.Args)
	}

	// One replica without leader election: the sidecars do not elect either.
	single := render(t, "--set", "controller.replicas=1", "--set", "controller.leaderElect=false", "--set", "controller.podDisruptionBudget.enabled=false",
		"--set", "csi.snapshots.enabled=false", "--set", "csi.controller.provisioner.featureGates=VolumeAttributesClass=false")
	sd := convert[appsv1.Deployment](t, mustFind(t, single, "Deployment", "sharewarden-controller"))
	if got := containerNames(sd.Spec.Template.Spec); !slices.Equal(got, []string{"controller", "csi-provisioner", "csi-resizer"}) {
		t.Errorf("without snapshots: containers %v", got)
	}
	for _, c := range sd.Spec.Template.Spec.Containers[1:] {
		if !hasArg(c.Args, "--leader-election=false") || slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--leader-election-namespace") }) ||
			c.LivenessProbe.HTTPGet.Path != "/metrics" {
			t.Errorf("%s without leader election: args %v, liveness %s", c.Name, c.Args, c.LivenessProbe.HTTPGet.Path)
		}
	}
	if p := container(t, sd.Spec.Template.Spec, "csi-provisioner"); !hasArg(p.Args, "--feature-gates=VolumeAttributesClass=false") {
		t.Errorf("csi-provisioner args %v lack the feature gate", p.Args)
	}
}

// rules renders a role's rules as "group/resource: verbs" lines, sorted, to compare with a table.
func rules(rs []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rs {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				out = append(out, g+"/"+res+": "+strings.Join(r.Verbs, ","))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestTemplateCSIRBAC: each sidecar has a ClusterRole and a Role of its own with exactly
// upstream's rules (minus the ones upstream leaves commented out), bound to the controller's
// ServiceAccount, which its pods run as; the controller itself gains only its snapshot rules.
func TestTemplateCSIRBAC(t *testing.T) {
	leases := "coordination.k8s.io/leases: get,watch,list,delete,update,create"
	want := map[string]struct{ cluster, ns []string }{
		"csi-provisioner": {
			cluster: []string{
				"/events: list,watch,create,update,patch", "/nodes: get,list,watch", "/persistentvolumeclaims: get,list,watch,update",
				"/persistentvolumes: get,list,watch,create,patch,delete", "snapshot.storage.k8s.io/volumesnapshotcontents: get,list",
				"snapshot.storage.k8s.io/volumesnapshots: get,list,watch,update", "storage.k8s.io/csinodes: get,list,watch",
				"storage.k8s.io/storageclasses: get,list,watch", "storage.k8s.io/volumeattachments: get,list,watch",
			},
			ns: []string{"/pods: get", "apps/replicasets: get", leases, "storage.k8s.io/csistoragecapacities: get,list,watch,create,update,patch,delete"},
		},
		"csi-resizer": {
			cluster: []string{
				"/events: list,watch,create,update,patch", "/persistentvolumeclaims/status: patch", "/persistentvolumeclaims: get,list,watch",
				"/persistentvolumes: get,list,watch,patch", "/pods: get,list,watch", "storage.k8s.io/volumeattributesclasses: get,list,watch",
			},
			ns: []string{leases},
		},
		"csi-snapshotter": {
			cluster: []string{
				"/events: list,watch,create,update,patch",
				"groupsnapshot.storage.k8s.io/volumegroupsnapshotclasses: get,list,watch",
				"groupsnapshot.storage.k8s.io/volumegroupsnapshotcontents/status: update,patch",
				"groupsnapshot.storage.k8s.io/volumegroupsnapshotcontents: get,list,watch,update,patch",
				"snapshot.storage.k8s.io/volumesnapshotclasses: get,list,watch",
				"snapshot.storage.k8s.io/volumesnapshotcontents/status: update,patch",
				"snapshot.storage.k8s.io/volumesnapshotcontents: get,list,watch,update,patch",
			},
			ns: []string{leases},
		},
	}
	objs := render(t)
	for sidecar, w := range want {
		name := "sharewarden-" + sidecar
		cr := convert[rbacv1.ClusterRole](t, mustFind(t, objs, "ClusterRole", name))
		role := convert[rbacv1.Role](t, mustFind(t, objs, "Role", name))
		if got := rules(cr.Rules); !slices.Equal(got, w.cluster) {
			t.Errorf("ClusterRole %s:\n got %q\nwant %q", name, got, w.cluster)
		}
		if got := rules(role.Rules); !slices.Equal(got, w.ns) {
			t.Errorf("Role %s:\n got %q\nwant %q", name, got, w.ns)
		}
		crb := convert[rbacv1.ClusterRoleBinding](t, mustFind(t, objs, "ClusterRoleBinding", name))
		rb := convert[rbacv1.RoleBinding](t, mustFind(t, objs, "RoleBinding", name))
		for _, b := range []struct {
			ref      rbacv1.RoleRef
			subjects []rbacv1.Subject
		}{{crb.RoleRef, crb.Subjects}, {rb.RoleRef, rb.Subjects}} {
			if b.ref.Name != name || len(b.subjects) != 1 || b.subjects[0].Name != "sharewarden-controller" || b.subjects[0].Namespace != releaseNamespace {
				t.Errorf("%s bound as %+v to %+v", name, b.ref, b.subjects)
			}
		}
		if role.Namespace != releaseNamespace {
			t.Errorf("Role %s in %q", name, role.Namespace)
		}
	}
	// The controller's own snapshot rules: backing claims' VolumeSnapshots in its namespace, the
	// backing driver's classes cluster-wide, and only reads of the snapshots (and their contents)
	// that claims restore from, in their namespaces.
	ctlRules := func(objs []*unstructured.Unstructured) (cluster, ns []string) {
		return rules(convert[rbacv1.ClusterRole](t, mustFind(t, objs, "ClusterRole", "sharewarden-controller")).Rules),
			rules(convert[rbacv1.Role](t, mustFind(t, objs, "Role", "sharewarden-controller")).Rules)
	}
	cluster, ns := ctlRules(objs)
	if !slices.Contains(ns, "snapshot.storage.k8s.io/volumesnapshots: get,list,watch,create,delete") ||
		!slices.Contains(cluster, "snapshot.storage.k8s.io/volumesnapshotclasses: get,list,watch") ||
		!slices.Contains(cluster, "snapshot.storage.k8s.io/volumesnapshots: get") ||
		!slices.Contains(cluster, "snapshot.storage.k8s.io/volumesnapshotcontents: get") {
		t.Errorf("controller snapshot rules: cluster %q, namespace %q", cluster, ns)
	}
	if !slices.Contains(cluster, "/persistentvolumeclaims: get,list,watch") {
		t.Errorf("controller cannot read claims cluster-wide: %q", cluster)
	}
	// No secrets for anyone (no class names any), and without snapshots no snapshot rules.
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range fixture.OfKind(objs, kind) {
			for _, r := range rules(convert[rbacv1.ClusterRole](t, o).Rules) {
				if strings.HasPrefix(r, "/secrets:") {
					t.Errorf("%s %s: %s", kind, o.GetName(), r)
				}
			}
		}
	}
	off := render(t, "--set", "csi.snapshots.enabled=false")
	if fixture.FindObject(off, "ClusterRole", "sharewarden-csi-snapshotter") != nil || fixture.FindObject(off, "VolumeSnapshotClass", "sharewarden-nfs") != nil {
		t.Error("csi.snapshots.enabled=false renders the snapshotter's role or the VolumeSnapshotClass")
	}
	cluster, ns = ctlRules(off)
	for _, r := range append(cluster, ns...) {
		if strings.HasPrefix(r, "snapshot.storage.k8s.io/") {
			t.Errorf("csi.snapshots.enabled=false: controller rule %s", r)
		}
	}
}

// TestTemplateCSIStorageClass: the managed class names the CSI driver by default, the legacy
// in-tree provisioner on request; only the CSI class takes snapshotClass.
func TestTemplateCSIStorageClass(t *testing.T) {
	class := func(objs []*unstructured.Unstructured) *storagev1.StorageClass {
		return convert[storagev1.StorageClass](t, mustFind(t, objs, "StorageClass", swv1.DefaultManagedStorageClass))
	}
	if sc := class(render(t, "-f", ciValues("csi-values.yaml"))); sc.Provisioner != swv1.CSIDriverName || !reflect.DeepEqual(sc.Parameters, map[string]string{"snapshotClass": "fast-rwo-snapshots"}) {
		t.Errorf("CSI class: provisioner %s, parameters %v", sc.Provisioner, sc.Parameters)
	}
	legacy := render(t, "-f", ciValues("resources-values.yaml"), "--set", "storageClass.provisioner=legacy")
	if sc := class(legacy); sc.Provisioner != swv1.Provisioner || sc.Parameters["backingStorageClass"] != "fast-rwo" || len(sc.Parameters) != 11 {
		t.Errorf("legacy class: provisioner %s, parameters %v", sc.Provisioner, sc.Parameters)
	}
	// The legacy class with CSI still on: the driver runs for CSI classes made by hand.
	if fixture.FindObject(legacy, "CSIDriver", swv1.CSIDriverName) == nil {
		t.Error("storageClass.provisioner=legacy turned the CSI driver off")
	}
}

// TestTemplateSnapshots: the VolumeSnapshotClass for ShareWarden volumes, and the optional
// snapshot-controller with upstream's RBAC, off by default.
func TestTemplateSnapshots(t *testing.T) {
	objs := render(t)
	vsc := mustFind(t, objs, "VolumeSnapshotClass", "sharewarden-nfs")
	if vsc.GetAPIVersion() != "snapshot.storage.k8s.io/v1" || vsc.Object["driver"] != swv1.CSIDriverName || vsc.Object["deletionPolicy"] != "Delete" ||
		vsc.GetAnnotations()["snapshot.storage.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("VolumeSnapshotClass %v", vsc.Object)
	}
	for _, kind := range []string{"Deployment", "ServiceAccount", "ClusterRole", "PodDisruptionBudget"} {
		if fixture.FindObject(objs, kind, "sharewarden-snapshot-controller") != nil {
			t.Errorf("defaults render the snapshot-controller's %s", kind)
		}
	}

	on := render(t, "-f", ciValues("csi-values.yaml"))
	vsc = mustFind(t, on, "VolumeSnapshotClass", "sharewarden-nfs")
	if vsc.Object["deletionPolicy"] != "Retain" || len(vsc.GetAnnotations()) != 0 {
		t.Errorf("VolumeSnapshotClass %v", vsc.Object)
	}
	d := convert[appsv1.Deployment](t, mustFind(t, on, "Deployment", "sharewarden-snapshot-controller"))
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.k8s.io/sig-storage/snapshot-controller:v8.7.0" || !hasArg(c.Args, "--leader-election=true") ||
		!hasArg(c.Args, "--leader-election-namespace="+releaseNamespace) || d.Spec.Template.Spec.ServiceAccountName != "sharewarden-snapshot-controller" {
		t.Errorf("snapshot-controller %s %v as %s", c.Image, c.Args, d.Spec.Template.Spec.ServiceAccountName)
	}
	cr := rules(convert[rbacv1.ClusterRole](t, mustFind(t, on, "ClusterRole", "sharewarden-snapshot-controller")).Rules)
	for _, want := range []string{
		"snapshot.storage.k8s.io/volumesnapshots: create,get,list,watch,update,patch,delete",
		"snapshot.storage.k8s.io/volumesnapshotcontents: create,get,list,watch,update,delete,patch",
		"/persistentvolumeclaims: get,list,watch,update",
	} {
		if !slices.Contains(cr, want) {
			t.Errorf("snapshot-controller ClusterRole %q lacks %s", cr, want)
		}
	}
	if len(cr) != 13 {
		t.Errorf("snapshot-controller ClusterRole has %d rules, upstream's has 13: %q", len(cr), cr)
	}
	b := convert[rbacv1.ClusterRoleBinding](t, mustFind(t, on, "ClusterRoleBinding", "sharewarden-snapshot-controller"))
	if b.Subjects[0].Name != "sharewarden-snapshot-controller" || b.Subjects[0].Namespace != releaseNamespace {
		t.Errorf("snapshot-controller bound to %+v", b.Subjects)
	}
	mustFind(t, on, "Role", "sharewarden-snapshot-controller")
}

// TestSnapshotCRDs: crds/snapshot/ holds upstream's three VolumeSnapshot CRDs, unchanged but for
// a header naming their version, and that version is the snapshot-controller's and
// csi-snapshotter's.
func TestSnapshotCRDs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "crds", "snapshot", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		CSI struct {
			Controller struct {
				Snapshotter struct {
					Image struct{ Tag string }
				}
			}
		}
		SnapshotController struct {
			Image struct{ Tag string }
		} `json:"snapshotController"`
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`(?m)^# Copied verbatim from the Go module github.com/kubernetes-csi/external-snapshotter/client/v8\n# (v[0-9.]+), file config/crd/(\S+)\n`)
	var kinds []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := header.FindSubmatch(b)
		if m == nil || string(m[2]) != filepath.Base(f) {
			t.Errorf("%s: no header naming its upstream file and version", f)
			continue
		}
		if v := string(m[1]); v != values.SnapshotController.Image.Tag || v != values.CSI.Controller.Snapshotter.Image.Tag {
			t.Errorf("%s is from %s, but snapshotController.image.tag is %s and csi.controller.snapshotter.image.tag %s", filepath.Base(f), v,
				values.SnapshotController.Image.Tag, values.CSI.Controller.Snapshotter.Image.Tag)
		}
		objs, err := fixture.DecodeManifest(b)
		if err != nil || len(objs) != 1 || objs[0].GetKind() != "CustomResourceDefinition" {
			t.Errorf("%s: %d objects, %v", f, len(objs), err)
			continue
		}
		kind, _, _ := unstructured.NestedString(objs[0].Object, "spec", "names", "kind")
		kinds = append(kinds, kind)
	}
	sort.Strings(kinds)
	if !slices.Equal(kinds, []string{"VolumeSnapshot", "VolumeSnapshotClass", "VolumeSnapshotContent"}) {
		t.Errorf("snapshot CRDs %v", kinds)
	}
}
