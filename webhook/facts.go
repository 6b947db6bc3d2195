package webhook

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sharewarden/sharewarden/mutators"
)

// Getter is the one question the handlers ask of the cluster: one object, by key. NotFound
// means it does not exist.
type Getter interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
}

// Lister lists objects; the handlers only list storage classes, to find the default one.
type Lister interface {
	List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error
}

// ReadThrough reads from an informer cache and falls back to the API when the cache misses
// (or has not started): a pod created a moment after its claim must still see the claim.
type ReadThrough struct {
	Cache client.Reader
	API   client.Reader
}

var _ client.Reader = ReadThrough{}

// Get implements Getter.
func (r ReadThrough) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := r.Cache.Get(ctx, key, obj, opts...)
	if err == nil || !missed(err) {
		return err
	}
	if err := r.API.Get(ctx, key, obj, opts...); err != nil {
		return fmt.Errorf("reading %s through to the API: %w", key, err)
	}
	return nil
}

// List lists from the cache, or from the API while the cache has not started.
func (r ReadThrough) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	err := r.Cache.List(ctx, list, opts...)
	var notStarted *cache.ErrCacheNotStarted
	if errors.As(err, &notStarted) {
		return r.API.List(ctx, list, opts...)
	}
	return err
}

func missed(err error) bool {
	var notStarted *cache.ErrCacheNotStarted
	return apierrors.IsNotFound(err) || errors.As(err, &notStarted)
}

// getOptional reads an object, reporting (false, nil) when it does not exist.
func getOptional(ctx context.Context, g Getter, key client.ObjectKey, obj client.Object) (bool, error) {
	err := g.Get(ctx, key, obj)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	default:
		return false, err
	}
}

// facts gathers what the rules need; every lookup goes through the reader.
type facts struct {
	get  Getter
	list Lister
	cfg  Config
}

func (f facts) class(ctx context.Context, name string, into map[string]*storagev1.StorageClass) error {
	if name == "" {
		return nil
	}
	if _, done := into[name]; done {
		return nil
	}
	sc := &storagev1.StorageClass{}
	found, err := getOptional(ctx, f.get, client.ObjectKey{Name: name}, sc)
	if err != nil {
		return fmt.Errorf("reading storage class %s: %w", name, err)
	}
	if found {
		into[name] = sc
	}
	return nil
}

func (f facts) claim(ctx context.Context, namespace, name string, into map[string]*corev1.PersistentVolumeClaim) error {
	if _, done := into[name]; done || name == "" {
		return nil
	}
	pvc := &corev1.PersistentVolumeClaim{}
	found, err := getOptional(ctx, f.get, client.ObjectKey{Namespace: namespace, Name: name}, pvc)
	if err != nil {
		return fmt.Errorf("reading claim %s/%s: %w", namespace, name, err)
	}
	if found {
		into[name] = pvc
	}
	return nil
}

func (f facts) defaultClass(ctx context.Context) (string, error) {
	var list storagev1.StorageClassList
	if err := f.list.List(ctx, &list); err != nil {
		return "", fmt.Errorf("listing storage classes for the default one: %w", err)
	}
	return mutators.DefaultClass(list.Items), nil
}

// forClaim gathers ClaimFacts. Lookups are made only for claims the rules may act on.
func (f facts) forClaim(ctx context.Context, pvc, old *corev1.PersistentVolumeClaim, privileged bool) (mutators.ClaimFacts, error) {
	out := mutators.ClaimFacts{
		ManagedClass: f.cfg.ManagedClass,
		Classes:      map[string]*storagev1.StorageClass{},
		Claims:       map[string]*corev1.PersistentVolumeClaim{},
		Old:          old,
		Privileged:   privileged,
	}
	if old != nil || !mutators.IsShared(pvc.Spec.AccessModes) {
		return out, nil
	}
	if pvc.Spec.StorageClassName == nil {
		var err error
		if out.DefaultClass, err = f.defaultClass(ctx); err != nil {
			return out, err
		}
	}
	className := mutators.RequestedClass(pvc.Spec.StorageClassName, out.DefaultClass)
	if err := f.class(ctx, className, out.Classes); err != nil {
		return out, err
	}
	switch {
	case className == "":
		return out, nil
	case className == f.cfg.ManagedClass:
		backing, _ := mutators.BackingClassName(pvc, out.Classes[className])
		if err := f.class(ctx, backing, out.Classes); err != nil {
			return out, err
		}
	case !mutators.IsOptedIn(out.Classes[className]):
		return out, nil
	default: // rewritten to the managed class, whose provisioner the claim is marked with
		if err := f.class(ctx, f.cfg.ManagedClass, out.Classes); err != nil {
			return out, err
		}
	}
	name, ok := sourceClaim(pvc)
	if !ok {
		return out, nil
	}
	if err := f.claim(ctx, pvc.Namespace, name, out.Claims); err != nil {
		return out, err
	}
	// A ShareWarden source is backed by the class it records, else by the managed class's
	// default one; the rules compare that with the new claim's backing class.
	if src := out.Claims[name]; src != nil && mutators.RequestedClass(src.Spec.StorageClassName, "") == f.cfg.ManagedClass {
		if err := f.class(ctx, f.cfg.ManagedClass, out.Classes); err != nil {
			return out, err
		}
	}
	return out, nil
}

// sourceClaim names the claim pvc clones, if it clones one from its own namespace.
func sourceClaim(pvc *corev1.PersistentVolumeClaim) (string, bool) {
	if r := pvc.Spec.DataSourceRef; r != nil {
		if (r.APIGroup == nil || *r.APIGroup == "") && r.Kind == "PersistentVolumeClaim" &&
			(r.Namespace == nil || *r.Namespace == "" || *r.Namespace == pvc.Namespace) {
			return r.Name, true
		}
		return "", false
	}
	if r := pvc.Spec.DataSource; r != nil && (r.APIGroup == nil || *r.APIGroup == "") && r.Kind == "PersistentVolumeClaim" {
		return r.Name, true
	}
	return "", false
}

// forPod gathers PodFacts: the claims its volumes name and the classes of its generic
// ephemeral volumes.
func (f facts) forPod(ctx context.Context, pod *corev1.Pod) (mutators.PodFacts, error) {
	out := mutators.PodFacts{
		ManagedClass:        f.cfg.ManagedClass,
		SchedulerName:       f.cfg.SchedulerName,
		ServerSchedulerName: f.cfg.ServerSchedulerName,
		SystemNamespace:     f.cfg.SystemNamespace,
		Claims:              map[string]*corev1.PersistentVolumeClaim{},
		Classes:             map[string]*storagev1.StorageClass{},
	}
	defaultResolved := false
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			if err := f.claim(ctx, pod.Namespace, v.PersistentVolumeClaim.ClaimName, out.Claims); err != nil {
				return out, err
			}
		case v.Ephemeral != nil && v.Ephemeral.VolumeClaimTemplate != nil:
			spec := v.Ephemeral.VolumeClaimTemplate.Spec
			if spec.StorageClassName == nil && !defaultResolved {
				var err error
				if out.DefaultClass, err = f.defaultClass(ctx); err != nil {
					return out, err
				}
				defaultResolved = true
			}
			if err := f.class(ctx, mutators.RequestedClass(spec.StorageClassName, out.DefaultClass), out.Classes); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}
