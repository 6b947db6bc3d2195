package mutators

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// guardAnnotations refuses system annotations (the names ShareWarden writes on a volume's PV)
// set or changed on a claim by anyone but ShareWarden, and a change of the recorded backing
// class after creation.
func guardAnnotations(pvc *corev1.PersistentVolumeClaim, f ClaimFacts) field.ErrorList {
	if f.Privileged {
		return nil
	}
	var errs field.ErrorList
	for _, key := range v1alpha1.SystemAnnotations() {
		v, set := pvc.Annotations[key]
		if f.Old == nil {
			if set {
				errs = append(errs, field.Forbidden(annotationsPath.Key(key), fmt.Sprintf(
					"only ShareWarden sets %s: it names a volume's backing claim or server, and a value set by anyone else could name another tenant's data; remove the annotation", key)))
			}
			continue
		}
		if old, wasSet := f.Old.Annotations[key]; old != v || wasSet != set {
			errs = append(errs, field.Forbidden(annotationsPath.Key(key), fmt.Sprintf(
				"only ShareWarden sets or changes %s: it names a volume's backing claim or server; leave it as it was (%q)", key, old)))
		}
	}
	if f.Old != nil {
		key := v1alpha1.AnnotationBackingStorageClass
		if old, v := f.Old.Annotations[key], pvc.Annotations[key]; old != v {
			errs = append(errs, field.Forbidden(annotationsPath.Key(key), fmt.Sprintf(
				"records the class the volume was provisioned from and cannot change after creation; leave it as it was (%q)", old)))
		}
	}
	return errs
}

// checkBacking checks that the backing class exists, is not the managed class, and can
// satisfy the claim's data source.
func checkBacking(pvc *corev1.PersistentVolumeClaim, backing string, path *field.Path, f ClaimFacts) field.ErrorList {
	if backing == f.ManagedClass {
		return field.ErrorList{field.Invalid(path, backing,
			"the backing class is the managed class itself: a ShareWarden volume cannot be backed by another ShareWarden volume; "+
				"name a ReadWriteOnce storage class as the backing class")}
	}
	bc := f.Classes[backing]
	if bc == nil {
		return field.ErrorList{field.Invalid(path, backing,
			"missing backing class: no storage class of that name exists to hold the data; create it, or name an existing ReadWriteOnce class")}
	}
	return checkDataSource(pvc, bc, f)
}

var (
	dataSourcePath    = field.NewPath("spec", "dataSource")
	dataSourceRefPath = field.NewPath("spec", "dataSourceRef")
)

// checkDataSource refuses data sources the backing claim cannot reach. The backing claim lives
// in ShareWarden's namespace, so of the claim's own namespace it can only reach what ShareWarden
// itself holds: a clone of a ShareWarden claim, made by cloning that claim's backing claim (with
// the backing class's provisioner, which only clones its own volumes), and a restore of a
// VolumeSnapshot of a ShareWarden claim, which restores the backing snapshot it stands for. An
// ordinary claim in the user's namespace, a source in another namespace and volume populators
// are out of its reach.
func checkDataSource(pvc *corev1.PersistentVolumeClaim, bc *storagev1.StorageClass, f ClaimFacts) field.ErrorList {
	var (
		group, kind, name string
		namespace         *string
		path              *field.Path
	)
	switch {
	case pvc.Spec.DataSourceRef != nil:
		r := pvc.Spec.DataSourceRef
		kind, name, namespace, path = r.Kind, r.Name, r.Namespace, dataSourceRefPath
		if r.APIGroup != nil {
			group = *r.APIGroup
		}
	case pvc.Spec.DataSource != nil:
		r := pvc.Spec.DataSource
		kind, name, path = r.Kind, r.Name, dataSourcePath
		if r.APIGroup != nil {
			group = *r.APIGroup
		}
	default:
		return nil
	}
	if namespace != nil && *namespace != "" && *namespace != pvc.Namespace {
		return field.ErrorList{field.Forbidden(path.Child("namespace"),
			"ShareWarden keeps the volume's data on a backing claim in its own namespace, which cannot reach a data source in another namespace; "+
				"clone a ShareWarden ReadWriteMany claim of this namespace instead, or create the claim without a data source and copy the data in once it is bound")}
	}
	switch {
	case group == "" && kind == "PersistentVolumeClaim":
		return checkClone(name, path, bc, f)
	case group == snapshotGroup && kind == "VolumeSnapshot":
		// A snapshot of a ShareWarden claim stands for a snapshot of its backing claim, which
		// the backing claim restores; the controller reports any other snapshot on the claim.
		return nil
	default:
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"ShareWarden does not pass volume populators (%s) on to the backing claim; create the claim empty and fill the volume after it is bound",
			groupKind(group, kind)))}
	}
}

// snapshotGroup is the API group of VolumeSnapshots.
const snapshotGroup = "snapshot.storage.k8s.io"

// checkClone admits a clone of a ShareWarden claim (one on the managed class, which the
// provisioner serves) whose backing class is bc: its backing claim is cloned from the source's.
func checkClone(name string, path *field.Path, bc *storagev1.StorageClass, f ClaimFacts) field.ErrorList {
	src := f.Claims[name]
	if src == nil {
		return field.ErrorList{field.Invalid(path.Child("name"), name,
			"the claim to clone does not exist in this namespace; create it first, or fix the name")}
	}
	if class := RequestedClass(src.Spec.StorageClassName, ""); class != f.ManagedClass {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"claim %q is not a ShareWarden volume (its class is %q): its data is on a volume in this namespace, which ShareWarden's backing claim, "+
				"in ShareWarden's own namespace, cannot clone; clone a ShareWarden ReadWriteMany claim (class %q) instead, "+
				"or create this claim without a data source and copy the data in once it is bound", name, class, f.ManagedClass))}
	}
	if bc.Provisioner == NoProvisioner {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"backing class %q has no dynamic provisioner, so it cannot clone a volume; create the claim without a data source, "+
				"or back it with a class whose provisioner can", bc.Name))}
	}
	srcBacking, _ := BackingClassName(src, f.Classes[f.ManagedClass])
	if srcBacking == "" {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"claim %q names no backing class, so ShareWarden never made a volume for it to clone; clone a ShareWarden claim that is bound", name))}
	}
	if srcBacking != bc.Name {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"a clone is made by the backing class's provisioner, which only clones its own volumes: claim %q is backed by class %q, this claim's backing class is %q; "+
				"clone a claim backed by %q, or request the class %q", name, srcBacking, bc.Name, bc.Name, srcBacking))}
	}
	return nil
}

func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return kind + "." + group
}
