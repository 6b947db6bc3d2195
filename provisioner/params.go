package provisioner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/nfsserver"
)

// Parameters of the managed StorageClass that shape each volume's server. Every one is optional.
const (
	ParamServerCPU         = "server.cpu"               // CPU request, e.g. "100m"
	ParamServerMemory      = "server.memory"            // memory request, e.g. "128Mi"
	ParamServerMemoryLimit = "server.memoryLimit"       // memory limit, e.g. "512Mi"
	ParamNodeSelector      = "server.nodeSelector"      // "key=value,key2=value2"
	ParamTolerations       = "server.tolerations"       // JSON list of core/v1 Tolerations
	ParamPriorityClassName = "server.priorityClassName" // PriorityClass of server pods
	ParamSquash            = "server.squash"            // "none" (default), "root" or "all"
	ParamAnonymousUID      = "server.anonymousUID"      // uid squashed requests run as (default 65534)
	ParamAnonymousGID      = "server.anonymousGID"      // gid squashed requests run as (default 65534)
	// ParamClientAllowlist says who may mount: "consumerNodes" (default) admits only the node
	// addresses of the volume's consumers; "off" admits every client that reaches the server, for
	// clusters where mounts do not come from node addresses.
	ParamClientAllowlist = "server.clientAllowlist"
)

// Values of ParamClientAllowlist.
const (
	ClientAllowlistConsumerNodes = "consumerNodes"
	ClientAllowlistOff           = "off"
)

// classParamKeys are every parameter the managed class understands.
var classParamKeys = []string{swv1.ParameterBackingStorageClass, ParamServerCPU, ParamServerMemory, ParamServerMemoryLimit,
	ParamNodeSelector, ParamTolerations, ParamPriorityClassName, ParamSquash, ParamAnonymousUID, ParamAnonymousGID,
	ParamClientAllowlist}

// Defaults for server pods and PVs, chosen for a small server per volume.
const (
	defaultServerCPU         = "50m"
	defaultServerMemory      = "64Mi"
	defaultServerMemoryLimit = "512Mi"
)

// DefaultMountOptions are used when the managed class sets no mountOptions:
//   - nfsvers=4.1: sessions give exactly-once semantics for retried requests, which is what makes
//     a retry across a failover safe; every Linux client since 3.x speaks it, and the server
//     serves 4.1 and 4.2 only.
//   - hard: a client keeps retrying through a failover instead of returning EIO to the
//     application (soft mounts turn a 15 s failover into lost writes).
//   - timeo=150,retrans=3: retry every 15 s, so a client reconnects soon after the replacement
//     server is up, without giving up (hard).
//   - noresvport: reconnect from a new source port after a failover instead of waiting for the
//     old connection's state to clear.
func DefaultMountOptions() []string {
	return []string{"nfsvers=4.1", "hard", "timeo=150", "retrans=3", "noresvport"}
}

// ClassParams are the parsed, validated parameters of the managed class.
type ClassParams struct {
	// BackingStorageClass backs claims written directly against the managed class.
	BackingStorageClass string
	Resources           corev1.ResourceRequirements
	NodeSelector        map[string]string
	Tolerations         []corev1.Toleration
	PriorityClassName   string
	// Squash is the export's squash mode (nfsserver.SquashNone, SquashRoot or SquashAll), and
	// AnonymousUID and AnonymousGID, when set, the identity squashed requests run as.
	Squash                     string
	AnonymousUID, AnonymousGID *int64
	// ClientAllowlist: the server admits only its consumers' node addresses.
	ClientAllowlist bool
	MountOptions    []string
	ReclaimPolicy   corev1.PersistentVolumeReclaimPolicy
}

// ParseClassParams reads and checks the managed class. Every problem is reported at once.
func ParseClassParams(sc *storagev1.StorageClass) (ClassParams, error) {
	p := ClassParams{
		BackingStorageClass: sc.Parameters[swv1.ParameterBackingStorageClass],
		PriorityClassName:   sc.Parameters[ParamPriorityClassName],
		MountOptions:        sc.MountOptions,
		ReclaimPolicy:       corev1.PersistentVolumeReclaimDelete,
		Squash:              nfsserver.SquashNone,
		ClientAllowlist:     true,
	}
	if sc.ReclaimPolicy != nil {
		p.ReclaimPolicy = *sc.ReclaimPolicy
	}
	if len(p.MountOptions) == 0 {
		p.MountOptions = DefaultMountOptions()
	}
	var errs field.ErrorList
	params := field.NewPath("parameters")
	for k := range sc.Parameters {
		if !slices.Contains(classParamKeys, k) {
			errs = append(errs, field.NotSupported(params.Key(k), k, classParamKeys))
		}
	}
	qty := func(key, def string) resource.Quantity {
		v := sc.Parameters[key]
		if v == "" {
			v = def
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, field.Invalid(params.Key(key), v, "not a quantity: "+err.Error()))
		}
		return q
	}
	p.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    qty(ParamServerCPU, defaultServerCPU),
			corev1.ResourceMemory: qty(ParamServerMemory, defaultServerMemory),
		},
		Limits: corev1.ResourceList{corev1.ResourceMemory: qty(ParamServerMemoryLimit, defaultServerMemoryLimit)},
	}
	if req, lim := p.Resources.Requests[corev1.ResourceMemory], p.Resources.Limits[corev1.ResourceMemory]; req.Cmp(lim) > 0 {
		errs = append(errs, field.Invalid(params.Key(ParamServerMemoryLimit), lim.String(), "below "+ParamServerMemory+" "+req.String()))
	}
	if v := sc.Parameters[ParamNodeSelector]; v != "" {
		p.NodeSelector = map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				errs = append(errs, field.Invalid(params.Key(ParamNodeSelector), v, "want key=value[,key=value]"))
				break
			}
			p.NodeSelector[k] = val
		}
	}
	if v := sc.Parameters[ParamTolerations]; v != "" {
		if err := json.Unmarshal([]byte(v), &p.Tolerations); err != nil {
			errs = append(errs, field.Invalid(params.Key(ParamTolerations), v, "want a JSON list of tolerations: "+err.Error()))
		}
	}
	switch v := sc.Parameters[ParamSquash]; v {
	case "", "none":
	case "root":
		p.Squash = nfsserver.SquashRoot
	case "all":
		p.Squash = nfsserver.SquashAll
	default:
		errs = append(errs, field.NotSupported(params.Key(ParamSquash), v, []string{"none", "root", "all"}))
	}
	id := func(key string) *int64 {
		v, ok := sc.Parameters[key]
		if !ok {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<32-2 {
			errs = append(errs, field.Invalid(params.Key(key), v, "want a numeric id between 0 and 4294967294"))
			return nil
		}
		return &n
	}
	p.AnonymousUID, p.AnonymousGID = id(ParamAnonymousUID), id(ParamAnonymousGID)
	switch v := sc.Parameters[ParamClientAllowlist]; v {
	case "", ClientAllowlistConsumerNodes:
	case ClientAllowlistOff:
		p.ClientAllowlist = false
	default:
		errs = append(errs, field.NotSupported(params.Key(ParamClientAllowlist), v, []string{ClientAllowlistConsumerNodes, ClientAllowlistOff}))
	}
	if p.BackingStorageClass == sc.Name {
		errs = append(errs, field.Invalid(params.Key(swv1.ParameterBackingStorageClass), p.BackingStorageClass,
			"the managed class cannot back itself; name a ReadWriteOnce class"))
	}
	if len(errs) > 0 {
		return p, fmt.Errorf("storage class %s: %w", sc.Name, errs.ToAggregate())
	}
	return p, nil
}

// SnapshotClass records what of the managed class a volume needs to go on without it.
func SnapshotClass(sc *storagev1.StorageClass) *swv1.ClassSnapshot {
	snap := &swv1.ClassSnapshot{Name: sc.Name, Provisioner: sc.Provisioner, Parameters: sc.Parameters, MountOptions: sc.MountOptions}
	if sc.ReclaimPolicy != nil {
		snap.ReclaimPolicy = string(*sc.ReclaimPolicy)
	}
	return snap
}

// ClassFromSnapshot rebuilds the class a snapshot was taken of, for ParseClassParams. Snapshots
// taken before they recorded the provisioner are of legacy classes.
func ClassFromSnapshot(snap *swv1.ClassSnapshot) *storagev1.StorageClass {
	provisioner := snap.Provisioner
	if provisioner == "" {
		provisioner = swv1.Provisioner
	}
	sc := &storagev1.StorageClass{Provisioner: provisioner, Parameters: snap.Parameters, MountOptions: snap.MountOptions}
	sc.Name = snap.Name
	if snap.ReclaimPolicy != "" {
		p := corev1.PersistentVolumeReclaimPolicy(snap.ReclaimPolicy)
		sc.ReclaimPolicy = &p
	}
	return sc
}
