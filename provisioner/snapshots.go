package provisioner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// A snapshot of a ShareWarden volume is two VolumeSnapshots: the user's, of the RWX claim, whose
// content is ShareWarden's (driver CSIDriverName), and the backing snapshot, of the backing
// claim, in ShareWarden's namespace, taken by the backing driver. The user's content's
// snapshot handle is the backing snapshot's name.

// AnnotationDefaultSnapshotClass marks a VolumeSnapshotClass as its driver's default.
const AnnotationDefaultSnapshotClass = "snapshot.storage.kubernetes.io/is-default-class"

// backingSnapshotName is the name of the backing snapshot that stands for the CSI snapshot
// called name, and so its snapshot ID. A CSI name may be any string; csi-snapshotter's
// (snapshot-<UID>) are object names already and are kept, others are hashed into one.
func backingSnapshotName(name string) string {
	if len(validation.IsDNS1123Subdomain(name)) == 0 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return "snapshot-" + hex.EncodeToString(sum[:16])
}

// BackingSnapshot is the backing VolumeSnapshot that stands for a ShareWarden snapshot called
// name, of the volume whose backing claim is backing.
func BackingSnapshot(name string, backing *corev1.PersistentVolumeClaim, snapshotClass string) *snapshotv1.VolumeSnapshot {
	labels := map[string]string{swv1.LabelManagedBy: swv1.ManagedByController}
	for _, k := range []string{swv1.LabelClaimUID, swv1.LabelClaimNamespace, swv1.LabelClaimName} {
		if v, ok := backing.Labels[k]; ok {
			labels[k] = v
		}
	}
	return &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: backing.Namespace, Labels: labels,
			Annotations: map[string]string{swv1.AnnotationBackingStorageClass: ptr.Deref(backing.Spec.StorageClassName, "")},
		},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{PersistentVolumeClaimName: ptr.To(backing.Name)},
			VolumeSnapshotClassName: ptr.To(snapshotClass),
		},
	}
}

// IsBackingSnapshot tells whether vs is a backing snapshot the controller made.
func IsBackingSnapshot(vs *snapshotv1.VolumeSnapshot) bool {
	return vs.Labels[swv1.LabelManagedBy] == swv1.ManagedByController && vs.Labels[swv1.LabelClaimUID] != ""
}

// PickSnapshotClass chooses the backing driver's VolumeSnapshotClass: the one named (by the
// VolumeSnapshotClass's or the managed class's snapshotClass parameter), or else the driver's
// only default. The error says what to create or set.
func PickSnapshotClass(classes []snapshotv1.VolumeSnapshotClass, driver, named, backingClass string) (string, error) {
	if named != "" {
		for _, c := range classes {
			if c.Name != named {
				continue
			}
			if c.Driver != driver {
				return "", fmt.Errorf("VolumeSnapshotClass %s is of driver %s, but backing class %s's volumes are of driver %s; name a VolumeSnapshotClass of %s in the %q parameter",
					named, c.Driver, backingClass, driver, driver, swv1.ParameterSnapshotClass)
			}
			return named, nil
		}
		return "", fmt.Errorf("VolumeSnapshotClass %s, named by the %q parameter, does not exist; create it for driver %s", named, swv1.ParameterSnapshotClass, driver)
	}
	var defaults []string
	for _, c := range classes {
		if c.Driver == driver && c.Annotations[AnnotationDefaultSnapshotClass] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	switch len(defaults) {
	case 1:
		return defaults[0], nil
	case 0:
		return "", fmt.Errorf("backing class %s (driver %s) has no default VolumeSnapshotClass, so its volumes cannot be snapshotted; create a VolumeSnapshotClass for %s annotated %s: \"true\", or name one in the %q parameter of the managed StorageClass or of ShareWarden's VolumeSnapshotClass",
			backingClass, driver, driver, AnnotationDefaultSnapshotClass, swv1.ParameterSnapshotClass)
	default:
		return "", fmt.Errorf("driver %s has %d default VolumeSnapshotClasses (%v); keep one default, or name one in the %q parameter", driver, len(defaults), defaults, swv1.ParameterSnapshotClass)
	}
}

// snapshotDataSource maps a restore of the user's VolumeSnapshot onto a restore of the backing
// snapshot it stands for. Snapshots of other drivers cannot be restored into ShareWarden's
// namespace, where the backing claim lives.
func (r *Reconciler) snapshotDataSource(ctx context.Context, ns, name, backingClass string) (*corev1.TypedLocalObjectReference, *Problem, error) {
	reader := r.apiReader() // rare reads, of types the cache does not watch
	vs := &snapshotv1.VolumeSnapshot{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, vs); apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, &Problem{Reason: ReasonBadDataSource, Message: fmt.Sprintf("the VolumeSnapshot to restore, %s, does not exist (yet)", name)}, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting VolumeSnapshot %s: %w", name, err)
	}
	contentName := ptr.Deref(vs.Status, snapshotv1.VolumeSnapshotStatus{}).BoundVolumeSnapshotContentName
	if vs.Status == nil || !ptr.Deref(vs.Status.ReadyToUse, false) || contentName == nil {
		return nil, &Problem{Reason: ReasonBadDataSource, Message: fmt.Sprintf("VolumeSnapshot %s is not ready to use yet; the restore waits for it", name)}, nil
	}
	content := &snapshotv1.VolumeSnapshotContent{}
	if err := reader.Get(ctx, client.ObjectKey{Name: *contentName}, content); apierrors.IsNotFound(err) {
		return nil, &Problem{Reason: ReasonBadDataSource, Message: fmt.Sprintf("VolumeSnapshot %s's content %s does not exist", name, *contentName)}, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting VolumeSnapshotContent %s: %w", *contentName, err)
	}
	if content.Spec.Driver != swv1.CSIDriverName {
		return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: fmt.Sprintf(
			"VolumeSnapshot %s is of driver %s, not of a ShareWarden volume, so ShareWarden's namespace cannot restore it; restore it into a ReadWriteOnce claim of its own driver instead, or restore a snapshot of a ShareWarden ReadWriteMany claim", name, content.Spec.Driver)}, nil
	}
	handle := ""
	if content.Status != nil {
		handle = ptr.Deref(content.Status.SnapshotHandle, "")
	}
	backing := &snapshotv1.VolumeSnapshot{}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: r.Config.Namespace, Name: handle}, backing); apierrors.IsNotFound(err) || handle == "" {
		return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: fmt.Sprintf(
			"VolumeSnapshot %s stands for backing snapshot %q in %s, which does not exist any more; its data is gone", name, handle, r.Config.Namespace)}, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting backing snapshot %s: %w", handle, err)
	}
	if !IsBackingSnapshot(backing) {
		return nil, &Problem{Reason: ReasonConflict, Fatal: true, Message: fmt.Sprintf("VolumeSnapshot %s/%s was not made by ShareWarden; refusing to restore it", r.Config.Namespace, handle)}, nil
	}
	if c := backing.Annotations[swv1.AnnotationBackingStorageClass]; c != "" && c != backingClass {
		return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: fmt.Sprintf(
			"VolumeSnapshot %s is of a volume backed by class %s and this claim is backed by %s: a backing driver restores only its own snapshots; back the restore with %s", name, c, backingClass, c)}, nil
	}
	return &corev1.TypedLocalObjectReference{APIGroup: ptr.To(snapshotv1.GroupName), Kind: "VolumeSnapshot", Name: backing.Name}, nil, nil
}
