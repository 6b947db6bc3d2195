package provisioner

import (
	"slices"
	"testing"

	"github.com/spf13/pflag"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/nfsserver"
)

func testVolume() Volume {
	params, _ := ParseClassParams(managedClass(nil))
	return Volume{
		Claim: &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data", UID: "0b9f6f43-5d0c-4a55-9d2c-3b1c1f7e7a01"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				StorageClassName: ptr.To("sharewarden-nfs"),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
			},
		},
		Namespace: "sharewarden-system", BackingClass: "local-rwo", Params: params,
		Server: ServerConfig{Image: "img", ServiceAccount: "sa", HealthPort: 9090, ExportPath: "/export"},
	}
}

func TestBuilders(t *testing.T) {
	v := testVolume()
	uid := string(v.Claim.UID)

	b := BackingClaim(v)
	if b.Namespace != "sharewarden-system" || b.Name != swv1.ObjectName(uid) || *b.Spec.StorageClassName != "local-rwo" ||
		!slices.Equal(b.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("backing claim: %+v", b)
	}
	if q := b.Spec.Resources.Requests[corev1.ResourceStorage]; q.Cmp(resource.MustParse("5Gi")) != 0 {
		t.Errorf("backing size %s", q.String())
	}
	for _, obj := range []metav1.Object{b, Service(v), ServerPod(v), PersistentVolume(v, "10.96.0.5", resource.MustParse("5Gi"))} {
		l := obj.GetLabels()
		if l[swv1.LabelClaimUID] != uid || l[swv1.LabelClaimNamespace] != "app" || l[swv1.LabelClaimName] != "data" || l[swv1.LabelManagedBy] != swv1.ManagedByController {
			t.Errorf("%s: labels %v", obj.GetName(), l)
		}
		if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
			t.Errorf("%s: invalid name: %v", obj.GetName(), errs)
		}
	}
	if errs := validation.IsDNS1035Label(Service(v).Name); len(errs) > 0 {
		t.Errorf("service name: %v", errs)
	}

	svc := Service(v)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 2049 || svc.Spec.Ports[0].Protocol != corev1.ProtocolTCP || svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("service ports: %+v", svc.Spec)
	}
	pod := ServerPod(v)
	for k, val := range svc.Spec.Selector {
		if pod.Labels[k] != val {
			t.Errorf("service selector %s=%s does not select the server pod (labels %v)", k, val, pod.Labels)
		}
	}
	c := pod.Spec.Containers[0]
	if pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != b.Name || c.VolumeMounts[0].MountPath != "/export" {
		t.Errorf("server does not mount the backing claim at /export: %+v %+v", pod.Spec.Volumes, c.VolumeMounts)
	}
	if c.Args[0] != "nfs-server" || !slices.Contains(c.Args, "--volume-id="+uid) || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("server container: args %v probe %+v", c.Args, c.ReadinessProbe)
	}
	// The agent labels its metrics with the claim it serves.
	if !slices.Contains(c.Args, "--claim-namespace="+v.Claim.Namespace) || !slices.Contains(c.Args, "--claim-name="+v.Claim.Name) {
		t.Errorf("server container does not name its claim: args %v", c.Args)
	}
	if pod.Labels[swv1.LabelComponent] != swv1.ComponentNFSServer {
		t.Errorf("server pod not labelled as a server: %v", pod.Labels)
	}
	if *c.SecurityContext.AllowPrivilegeEscalation || c.SecurityContext.Privileged != nil {
		t.Errorf("server must not be privileged: %+v", c.SecurityContext)
	}

	pv := PersistentVolume(v, "10.96.0.5", resource.MustParse("6Gi"))
	if pv.Name != "pvc-"+uid || pv.Spec.NFS.Server != "10.96.0.5" || pv.Spec.ClaimRef.UID != v.Claim.UID || pv.Spec.ClaimRef.Name != "data" ||
		pv.Spec.StorageClassName != "sharewarden-nfs" || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		!slices.Equal(pv.Spec.MountOptions, DefaultMountOptions()) || !slices.Equal(pv.Spec.AccessModes, v.Claim.Spec.AccessModes) {
		t.Errorf("pv: %+v", pv.Spec)
	}
	if q := pv.Spec.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse("6Gi")) != 0 {
		t.Errorf("pv capacity %s, want the backing volume's 6Gi", q.String())
	}

	if ServerPod(v).Spec.Affinity != nil {
		t.Error("a volume never fenced needs no affinity")
	}
	v.AvoidNodes = []string{"node-a1"}
	if a := ServerPod(v).Spec.Affinity; a == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Operator != corev1.NodeSelectorOpNotIn ||
		!slices.Equal(a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0].Values, []string{"node-a1"}) {
		t.Errorf("a replacement must avoid the fenced node: %+v", a)
	}
	v.Params.Squash = nfsserver.SquashRoot
	if !slices.Contains(ServerPod(v).Spec.Containers[0].Args, "--squash=root_squash") {
		t.Error("root squash not passed to the server")
	}
	v.Params.ClientAllowlist = false
	if p := ServerPod(v); slices.Contains(p.Spec.Containers[0].Args, "--client-allowlist") || p.Annotations[swv1.AnnotationAllowedClients] != "" {
		t.Error("allowlist off in the class, but asked of the server")
	}
	v.Params.ClientAllowlist = true
	v.AllowedClients = []string{"10.0.0.1", "10.0.0.2"}
	if p := ServerPod(v); !slices.Contains(p.Spec.Containers[0].Args, "--client-allowlist") || p.Annotations[swv1.AnnotationAllowedClients] != "10.0.0.1,10.0.0.2" {
		t.Errorf("allowlist: args %v, annotations %v", p.Spec.Containers[0].Args, p.Annotations)
	}
	if pv.Spec.NFS.Path != ExportPseudoPath {
		t.Errorf("PV path %q, want the server's pseudo path %q", pv.Spec.NFS.Path, ExportPseudoPath)
	}
}

// TestServerArgsAcceptedByAgent parses the server pod's arguments with the agent's own flags,
// so the two roles cannot drift apart.
func TestServerArgsAcceptedByAgent(t *testing.T) {
	v := testVolume()
	v.Params.Squash = nfsserver.SquashAll
	v.Params.AnonymousUID, v.Params.AnonymousGID = ptr.To[int64](1000), ptr.To[int64](1001)
	v.Params.ClientAllowlist = true
	args := ServerPod(v).Spec.Containers[0].Args
	if args[0] != "nfs-server" {
		t.Fatalf("first argument %q, want the nfs-server subcommand", args[0])
	}
	opts := nfsserver.DefaultOptions()
	lease := fencing.DefaultHolderOptions()
	fs := pflag.NewFlagSet("nfs-server", pflag.ContinueOnError)
	opts.AddFlags(fs) // the flags of `sharewarden nfs-server`: the agent's and its lease's
	lease.AddFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		t.Fatalf("agent rejects the controller's arguments: %v", err)
	}
	if opts.VolumeID != string(v.Claim.UID) || opts.VolumeDir != "/export" || opts.PseudoPath != ExportPseudoPath || opts.Squash != nfsserver.SquashAll ||
		opts.AnonymousUID != 1000 || opts.AnonymousGID != 1001 || !opts.ClientAllowlist {
		t.Errorf("agent options from the pod: %+v", opts)
	}
	if lease.Labels[swv1.LabelClaimName] != "data" || lease.Labels[swv1.LabelClaimNamespace] != "app" || !lease.Enabled {
		t.Errorf("lease options from the pod: %+v", lease)
	}
}
