package provisioner

import (
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/nfsserver"
)

// ExportPseudoPath is the NFSv4 pseudo path every server exports its volume at.
const ExportPseudoPath = "/export"

// serverRuntimeDir holds ganesha's config and pid file in the server pod (an emptyDir).
const serverRuntimeDir = "/run/sharewarden"

// PVName is the NFS PV's name for a claim, as external provisioners name theirs.
func PVName(claimUID string) string { return "pvc-" + claimUID }

// Volume is everything the builders need to know about one volume.
type Volume struct {
	Claim *corev1.PersistentVolumeClaim
	// Namespace holds the backing claim, server pod and Service.
	Namespace    string
	BackingClass string
	Params       ClassParams
	Server       ServerConfig
	// AvoidNodes are nodes servers of this volume were fenced off: a replacement must not
	// land there, even if the scheduler extender is down (it is ignorable).
	AvoidNodes []string
	// PinNode, when set, is the only node the server may start on: the node a rolled server ran
	// on, where its RWO disk is attached.
	PinNode string
	// DataSource of the backing claim: for a clone of another ShareWarden claim, that claim's
	// backing claim (in ShareWarden's namespace, where the backing class's provisioner can
	// clone it). Nil for an empty volume.
	DataSource *corev1.TypedLocalObjectReference
	// CSI: the managed class names ShareWarden's CSI driver, so external-provisioner makes the
	// PV (through CreateVolume) and external-resizer resizes it.
	CSI bool
	// class is the managed class as seen (or last seen) for this pass.
	class *swv1.ClassSnapshot
	// AllowedClients are the addresses the server admits (with Params.ClientAllowlist): see
	// AllowedClients.
	AllowedClients []string
	// ServiceIP pins the Service's ClusterIP: once a PV names an address, every mount uses it,
	// so a recreated Service must take the same one. Empty lets the apiserver pick.
	ServiceIP string
}

// ServerConfig is how the controller runs NFS server pods (from its flags).
type ServerConfig struct {
	Image           string
	ImagePullPolicy corev1.PullPolicy
	ServiceAccount  string
	// HealthPort serves the agent's /healthz and /metrics.
	HealthPort int32
	// ExportPath is where the backing volume is mounted in the server and the NFS export path.
	ExportPath string
	// ExtraArgs are appended to the agent's arguments.
	ExtraArgs []string
}

func (v Volume) uid() string { return string(v.Claim.UID) }

// Labels every object of the volume carries.
func (v Volume) Labels() map[string]string {
	return map[string]string{
		swv1.LabelVolume:         v.uid(),
		swv1.LabelClaimNamespace: v.Claim.Namespace,
		swv1.LabelClaimName:      truncateLabel(v.Claim.Name),
		swv1.LabelClaimUID:       v.uid(),
		swv1.LabelManagedBy:      swv1.ManagedByController,
	}
}

func truncateLabel(s string) string {
	if len(s) > 63 {
		return s[:63]
	}
	return s
}

// BackingClaimKey is where the backing claim lives.
func (v Volume) BackingClaimKey() (ns, name string) { return v.Namespace, swv1.ObjectName(v.uid()) }

// ServerKey is the server pod's and the Service's namespace and name. A fixed pod name means
// the apiserver itself guarantees at most one server pod per volume.
func (v Volume) ServerKey() (ns, name string) { return v.Namespace, swv1.ObjectName(v.uid()) }

// requestedSize is the RWX claim's storage request.
func (v Volume) requestedSize() resource.Quantity {
	return v.Claim.Spec.Resources.Requests[corev1.ResourceStorage]
}

// BackingClaim builds the RWO claim that holds the volume's data. It carries the volume's
// protection finalizer and the reclaim policy the volume was made with.
func BackingClaim(v Volume) *corev1.PersistentVolumeClaim {
	ns, name := v.BackingClaimKey()
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: v.Labels(),
			Annotations: map[string]string{swv1.AnnotationReclaimPolicy: string(v.Params.ReclaimPolicy)},
			Finalizers:  []string{swv1.FinalizerVolumeProtection},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(v.BackingClass),
			VolumeMode:       ptr.To(corev1.PersistentVolumeFilesystem),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: v.requestedSize()},
			},
			DataSource: v.DataSource,
		},
	}
}

// Service builds the volume's stable ClusterIP Service: NFSv4 over TCP 2049 only, at the
// pinned address when the volume has one, protected against a casual delete.
func Service(v Volume) *corev1.Service {
	ns, name := v.ServerKey()
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: v.Labels(), Finalizers: []string{swv1.FinalizerVolumeProtection}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: v.ServiceIP,
			Selector:  map[string]string{swv1.LabelVolume: v.uid(), swv1.LabelComponent: swv1.ComponentNFSServer},
			Ports: []corev1.ServicePort{{
				Name: "nfs", Protocol: corev1.ProtocolTCP, Port: swv1.NFSPort, TargetPort: intstr.FromInt32(swv1.NFSPort),
			}},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
}

// leaseLabelsArg renders labels for --lease-labels, sorted so the pod spec is stable.
func leaseLabelsArg(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

// ServerPod builds the volume's NFS server pod.
func ServerPod(v Volume) *corev1.Pod {
	ns, name := v.ServerKey()
	labels := v.Labels()
	labels[swv1.LabelComponent] = swv1.ComponentNFSServer
	_, backing := v.BackingClaimKey()
	args := []string{
		"nfs-server",
		"--volume-id=" + v.uid(),
		"--claim-namespace=" + v.Claim.Namespace,
		"--claim-name=" + v.Claim.Name,
		"--volume-dir=" + v.Server.ExportPath,
		"--pseudo-path=" + ExportPseudoPath,
		"--nfs-address=0.0.0.0:" + strconv.Itoa(swv1.NFSPort),
		"--http-address=:" + strconv.Itoa(int(v.Server.HealthPort)),
		"--runtime-dir=" + serverRuntimeDir,
		"--lease-labels=" + leaseLabelsArg(v.Labels()),
	}
	if v.Params.Squash != "" && v.Params.Squash != nfsserver.SquashNone {
		args = append(args, "--squash="+v.Params.Squash)
	}
	if id := v.Params.AnonymousUID; id != nil {
		args = append(args, "--anonymous-uid="+strconv.FormatInt(*id, 10))
	}
	if id := v.Params.AnonymousGID; id != nil {
		args = append(args, "--anonymous-gid="+strconv.FormatInt(*id, 10))
	}
	if v.Params.ClientAllowlist {
		args = append(args, "--client-allowlist")
	}
	args = append(args, v.Server.ExtraArgs...)
	var node []corev1.NodeSelectorRequirement
	if len(v.AvoidNodes) > 0 {
		node = append(node, corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpNotIn, Values: v.AvoidNodes})
	}
	if v.PinNode != "" {
		node = append(node, corev1.NodeSelectorRequirement{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{v.PinNode}})
	}
	var affinity *corev1.Affinity
	if len(node) > 0 {
		affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: node,
			}}},
		}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			Affinity:                      affinity,
			ServiceAccountName:            v.Server.ServiceAccount,
			EnableServiceLinks:            ptr.To(false),
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](15),
			PriorityClassName:             v.Params.PriorityClassName,
			NodeSelector:                  v.Params.NodeSelector,
			Tolerations:                   v.Params.Tolerations,
			Containers: []corev1.Container{{
				Name:            "nfs-server",
				Image:           v.Server.Image,
				ImagePullPolicy: v.Server.ImagePullPolicy,
				Args:            args,
				Ports: []corev1.ContainerPort{
					{Name: "nfs", ContainerPort: swv1.NFSPort, Protocol: corev1.ProtocolTCP},
					{Name: "health", ContainerPort: v.Server.HealthPort, Protocol: corev1.ProtocolTCP},
				},
				Env: []corev1.EnvVar{
					{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
					{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
				},
				Resources: v.Params.Resources,
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("health")}},
					PeriodSeconds:    2,
					FailureThreshold: 2,
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "export", MountPath: v.Server.ExportPath},
					{Name: "run", MountPath: serverRuntimeDir},
				},
				// ganesha runs as root inside the pod to serve files owned by any user; it needs
				// no privilege beyond the file capabilities below (see the chart's docs).
				// SYS_PTRACE is the agent's: ganesha stops being dumpable once it serves a
				// non-root uid, and only that capability then reads its /proc/<pid>/io for the
				// I/O metrics (the container's own PID namespace holds only agent and ganesha).
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities: &corev1.Capabilities{
						Drop: []corev1.Capability{"ALL"},
						Add:  []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "SETGID", "SETUID", "SYS_PTRACE", "SYS_RESOURCE"},
					},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "export", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: backing}}},
				// ganesha's config, pid file and caches: the root filesystem stays read-only.
				{Name: "run", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr.To(resource.MustParse("16Mi"))}}},
			},
		},
	}
	pod.Annotations = map[string]string{AnnotationServerSpecHash: serverSpecHash(pod.Spec)}
	if v.Params.ClientAllowlist {
		// Made with the clients known now, so a new server admits its consumers from its start.
		pod.Annotations[swv1.AnnotationAllowedClients] = strings.Join(v.AllowedClients, ",")
	}
	return pod
}

// PersistentVolume builds the NFS PV bound to the RWX claim: the Service's ClusterIP (stable
// across every failover), the export path, the claim's access modes, and capacity as large as
// the backing volume really is.
func PersistentVolume(v Volume, serviceIP string, capacity resource.Quantity) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:   PVName(v.uid()),
			Labels: v.Labels(),
			Annotations: map[string]string{
				"pv.kubernetes.io/provisioned-by": swv1.Provisioner,
				swv1.AnnotationBackingClaim:       v.Namespace + "/" + swv1.ObjectName(v.uid()),
				swv1.AnnotationServer:             v.Namespace + "/" + swv1.ObjectName(v.uid()),
			},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   v.Claim.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: v.Params.ReclaimPolicy,
			StorageClassName:              ptr.Deref(v.Claim.Spec.StorageClassName, ""),
			MountOptions:                  v.Params.MountOptions,
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: v.Claim.Namespace, Name: v.Claim.Name, UID: v.Claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				NFS: &corev1.NFSVolumeSource{Server: serviceIP, Path: ExportPseudoPath},
			},
		},
	}
}

// SharedVolumeFor builds the SharedVolume record of a claim.
func SharedVolumeFor(claim *corev1.PersistentVolumeClaim, backingClass string) *swv1.SharedVolume {
	return &swv1.SharedVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name: claim.Name, Namespace: claim.Namespace,
			Labels:     map[string]string{swv1.LabelClaimUID: string(claim.UID), swv1.LabelManagedBy: swv1.ManagedByController},
			Finalizers: []string{swv1.Finalizer},
		},
		Spec: swv1.SharedVolumeSpec{ClaimName: claim.Name, ClaimUID: string(claim.UID), BackingStorageClass: backingClass},
	}
}
