package mutators

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// guardAnnotations refuses system annotations set or changed by anyone but ShareWarden, and a
// change of the recorded backing class after creation.
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
					"only ShareWarden sets %s: it ties a claim to a volume, and a value set by anyone else could point the claim at another tenant's data; remove the annotation", key)))
			}
			continue
		}
		if old, wasSet := f.Old.Annotations[key]; old != v || wasSet != set {
			errs = append(errs, field.Forbidden(annotationsPath.Key(key), fmt.Sprintf(
				"only ShareWarden sets or changes %s: it ties the claim to its volume; leave it as it was (%q)", key, old)))
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

// checkDataSource refuses data sources the backing class cannot satisfy: the backing claim is
// provisioned from bc with the same data source, so a clone must come from a volume of the same
// class, the class must provision dynamically, and populators are not passed on.
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
			"ShareWarden cannot pass a data source from another namespace on to the backing claim; copy or snapshot the data into this namespace first")}
	}
	if bc.Provisioner == NoProvisioner {
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"backing class %q has no dynamic provisioner, so it can neither clone nor restore data; create the claim without a data source, "+
				"or back it with a class whose provisioner can", bc.Name))}
	}
	switch {
	case group == "" && kind == "PersistentVolumeClaim":
		src := f.Claims[name]
		if src == nil {
			return field.ErrorList{field.Invalid(path.Child("name"), name,
				"the claim to clone does not exist in this namespace; create it first, or fix the name")}
		}
		srcClass := RequestedClass(src.Spec.StorageClassName, "")
		if srcClass == f.ManagedClass {
			srcClass = src.Annotations[v1alpha1.AnnotationBackingStorageClass]
		}
		if srcClass != bc.Name {
			return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
				"a clone is made by the backing class's provisioner, which only clones its own volumes: claim %q is on class %q, the backing class is %q; "+
					"clone a claim backed by %q, or request the class %q", name, srcClass, bc.Name, bc.Name, srcClass))}
		}
		return nil
	case group == "snapshot.storage.k8s.io" && kind == "VolumeSnapshot":
		// Restored by the backing class's CSI driver, like any snapshot restore.
		return nil
	default:
		return field.ErrorList{field.Forbidden(path, fmt.Sprintf(
			"ShareWarden does not pass volume populators (%s) on to the backing claim; create the claim empty and fill the volume after it is bound",
			groupKind(group, kind)))}
	}
}

func groupKind(group, kind string) string {
	if group == "" {
		return kind
	}
	return kind + "." + group
}
