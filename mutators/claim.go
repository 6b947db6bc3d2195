package mutators

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// NoProvisioner is the provisioner of statically provisioned storage classes.
const NoProvisioner = "kubernetes.io/no-provisioner"

// ClaimFacts is what MutateClaim needs to know about the cluster.
type ClaimFacts struct {
	// ManagedClass names ShareWarden's storage class.
	ManagedClass string
	// DefaultClass names the cluster's default storage class; empty when there is none.
	DefaultClass string
	// Classes holds, by name, the storage classes the claim refers to: its own (or the default),
	// the managed class (when the claim is on it, or clones a claim on it that records no
	// backing class), and the backing class it names. A name missing here does not exist.
	Classes map[string]*storagev1.StorageClass
	// Claims holds, by name, the claim of the claim's namespace it names as its data source (a
	// clone). A name missing here does not exist.
	Claims map[string]*corev1.PersistentVolumeClaim
	// Old is the claim before an update; nil for a create.
	Old *corev1.PersistentVolumeClaim
	// Privileged is set when ShareWarden itself makes the request: it may write system
	// annotations.
	Privileged bool
}

// ClaimResult is what MutateClaim decided.
type ClaimResult struct {
	// Claim is the claim to admit: the input itself when unchanged, a changed copy otherwise.
	Claim   *corev1.PersistentVolumeClaim
	Changed bool
	Outcome Outcome
}

var (
	annotationsPath = field.NewPath("metadata", "annotations")
	classPath       = field.NewPath("spec", "storageClassName")
	volumeModePath  = field.NewPath("spec", "volumeMode")
)

// IsShared tells whether modes include ReadWriteMany or ReadOnlyMany, the modes ShareWarden
// serves.
func IsShared(modes []corev1.PersistentVolumeAccessMode) bool {
	for _, m := range modes {
		if m == corev1.ReadWriteMany || m == corev1.ReadOnlyMany {
			return true
		}
	}
	return false
}

// IsOptedIn tells whether the operator opted sc in to ShareWarden.
func IsOptedIn(sc *storagev1.StorageClass) bool {
	return sc != nil && sc.Annotations[v1alpha1.AnnotationRWX] == v1alpha1.RWXModeNFS
}

// RequestedClass is the storage class a claim spec asks for: its storageClassName, or the
// default class when the name is unset. An explicit "" means no class at all.
func RequestedClass(className *string, defaultClass string) string {
	if className == nil {
		return defaultClass
	}
	return *className
}

// BackingClassName is the backing class a claim written against the managed class names: its
// AnnotationBackingStorageClass, else the managed class's ParameterBackingStorageClass.
func BackingClassName(pvc *corev1.PersistentVolumeClaim, managed *storagev1.StorageClass) (name string, fromAnnotation bool) {
	if v := pvc.Annotations[v1alpha1.AnnotationBackingStorageClass]; v != "" {
		return v, true
	}
	if managed == nil {
		return "", false
	}
	return managed.Parameters[v1alpha1.ParameterBackingStorageClass], false
}

// MutateClaim applies the claim rules:
//
//   - A ReadWriteMany or ReadOnlyMany claim on an opted-in class is rewritten to the managed
//     class, AnnotationBackingStorageClass recording the original class.
//   - A claim written against the managed class gets its backing class from the class's
//     ParameterBackingStorageClass (or keeps a valid one it already names).
//   - Refused: block volume mode, a missing backing class or the managed class as its own
//     backing, system annotations from anyone but ShareWarden, and data sources the backing
//     claim cannot reach: anything but a clone of a ShareWarden claim with the same backing
//     class (see checkDataSource).
//   - Everything else passes untouched.
func MutateClaim(pvc *corev1.PersistentVolumeClaim, f ClaimFacts) (ClaimResult, error) {
	if pvc == nil {
		return ClaimResult{}, errors.New("no claim to mutate")
	}
	untouched := func(o Outcome) (ClaimResult, error) { return ClaimResult{Claim: pvc, Outcome: o}, nil }

	if errs := guardAnnotations(pvc, f); len(errs) > 0 {
		return ClaimResult{}, denied(errs)
	}
	if f.Old != nil {
		// The class of a claim cannot change after creation: the rewrite happened, or not, then.
		return untouched(Updated)
	}
	if !IsShared(pvc.Spec.AccessModes) {
		return untouched(NotShared)
	}
	className := RequestedClass(pvc.Spec.StorageClassName, f.DefaultClass)
	if className == "" {
		return untouched(NoClass)
	}

	var (
		backing        string
		fromAnnotation bool
		errs           field.ErrorList
	)
	if className == f.ManagedClass {
		managed := f.Classes[className]
		if managed == nil {
			return ClaimResult{}, denied(field.ErrorList{field.Invalid(classPath, className,
				"ShareWarden's storage class does not exist, so nothing would provision this claim; "+
					"ask your operator to install it, or request an opted-in class instead")})
		}
		backing, fromAnnotation = BackingClassName(pvc, managed)
		switch {
		case backing == "":
			errs = append(errs, field.Required(classPath, fmt.Sprintf(
				"missing backing class: storage class %q has no parameter %q, so there is no ReadWriteOnce class to hold the data; "+
					"ask your operator to set it, or request an opted-in class (annotated %s: %q) instead",
				className, v1alpha1.ParameterBackingStorageClass, v1alpha1.AnnotationRWX, v1alpha1.RWXModeNFS)))
		case fromAnnotation && backing != managed.Parameters[v1alpha1.ParameterBackingStorageClass] &&
			backing != className && !IsOptedIn(f.Classes[backing]) && f.Classes[backing] != nil:
			errs = append(errs, field.Forbidden(annotationsPath.Key(v1alpha1.AnnotationBackingStorageClass), fmt.Sprintf(
				"storage class %q is not opted in to ShareWarden; name a class annotated %s: %q, "+
					"or drop the annotation to use the managed class's default backing class", backing, v1alpha1.AnnotationRWX, v1alpha1.RWXModeNFS)))
		}
	} else {
		if !IsOptedIn(f.Classes[className]) {
			return untouched(NotOptedIn)
		}
		backing = className
	}

	backingPath := classPath
	if fromAnnotation {
		backingPath = annotationsPath.Key(v1alpha1.AnnotationBackingStorageClass)
	}
	if pvc.Spec.VolumeMode != nil && *pvc.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		errs = append(errs, field.Forbidden(volumeModePath,
			"ShareWarden serves shared volumes over NFS, which serves filesystems, not raw block devices; "+
				"use volumeMode: Filesystem, or a storage class with native ReadWriteMany block support"))
	}
	if backing != "" {
		errs = append(errs, checkBacking(pvc, backing, backingPath, f)...)
	}
	if len(errs) > 0 {
		return ClaimResult{}, denied(errs)
	}

	if className == f.ManagedClass && fromAnnotation {
		return untouched(AlreadyRewritten)
	}
	out := pvc.DeepCopy()
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[v1alpha1.AnnotationBackingStorageClass] = backing
	markProvisioner(out, f.Classes[f.ManagedClass])
	if className == f.ManagedClass {
		return ClaimResult{Claim: out, Changed: true, Outcome: BackingRecorded}, nil
	}
	managed := f.ManagedClass
	out.Spec.StorageClassName = &managed
	return ClaimResult{Claim: out, Changed: true, Outcome: Rewritten}, nil
}

// markProvisioner names the managed class's provisioner on the claim as kube-controller-manager's
// PV controller would (see v1alpha1.AnnotationStorageProvisioner), so that it need not update the
// claim itself. Without the class (not looked up) the claim is left for the PV controller.
func markProvisioner(pvc *corev1.PersistentVolumeClaim, managed *storagev1.StorageClass) {
	if managed == nil || !v1alpha1.IsManagedProvisioner(managed.Provisioner) {
		return
	}
	pvc.Annotations[v1alpha1.AnnotationStorageProvisioner] = managed.Provisioner
	pvc.Annotations[v1alpha1.AnnotationBetaStorageProvisioner] = managed.Provisioner
}

// Annotations that make a storage class the cluster default.
const (
	isDefaultClass     = "storageclass.kubernetes.io/is-default-class"
	isDefaultClassBeta = "storageclass.beta.kubernetes.io/is-default-class"
)

// DefaultClass names the cluster's default storage class as the apiserver's DefaultStorageClass
// admission plugin picks it: of the classes annotated as default, the newest, the first name on
// a tie; "" when there is none.
func DefaultClass(classes []storagev1.StorageClass) string {
	var best *storagev1.StorageClass
	for i := range classes {
		c := &classes[i]
		if c.Annotations[isDefaultClass] != "true" && c.Annotations[isDefaultClassBeta] != "true" {
			continue
		}
		switch {
		case best == nil, c.CreationTimestamp.After(best.CreationTimestamp.Time):
			best = c
		case c.CreationTimestamp.Equal(&best.CreationTimestamp) && c.Name < best.Name:
			best = c
		}
	}
	if best == nil {
		return ""
	}
	return best.Name
}
