package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// The deletion contract. A volume's data is released only when the user deletes its RWX claim
// (or replaces it by a new claim of the same name, with another UID), confirmed by the
// apiserver itself, never by a cache, and then as the volume's reclaim policy says: the PV's
// persistentVolumeReclaimPolicy, or, for a claim deleted before its PV existed, the policy
// recorded on the backing claim (Retain when none is). Nothing else leads here: a missing
// class, Service, pod, Lease or SharedVolume is repaired or reported by provision.

// claimGone tells, reading past the cache, whether the claim key names no longer holds uid.
func (r *Reconciler) claimGone(ctx context.Context, key types.NamespacedName, uid string) (bool, error) {
	live := &corev1.PersistentVolumeClaim{}
	if err := r.apiReader().Get(ctx, key, live); apierrors.IsNotFound(err) {
		return true, nil
	} else if err != nil {
		return false, fmt.Errorf("confirming claim %s is gone: %w", key, err)
	}
	return string(live.UID) != uid, nil
}

// releaseIfClaimGone releases the volume uid once the apiserver confirms its claim is gone;
// while the cache is merely behind, it looks again shortly.
func (r *Reconciler) releaseIfClaimGone(ctx context.Context, key types.NamespacedName, uid string, sv *swv1.SharedVolume) (ctrl.Result, error) {
	gone, err := r.claimGone(ctx, key, uid)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !gone {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	return r.release(ctx, key, uid, sv)
}

// releaseOrphans releases volumes made for claims of this name that are gone although their
// SharedVolume is too (deleted by hand, then the claim): found by the labels on their PV and
// backing claim, through an index, so that looking costs nothing for the many claims that have
// none. keep is the UID of the live claim of that name, if any.
func (r *Reconciler) releaseOrphans(ctx context.Context, key types.NamespacedName, keep string) (ctrl.Result, error) {
	sel := client.MatchingFields{IndexClaimKey: claimKeyValue(key.Namespace, truncateLabel(key.Name))}
	uids := map[string]bool{}
	pvs := &corev1.PersistentVolumeList{}
	if err := r.Client.List(ctx, pvs, sel); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing PVs of %s: %w", key, err)
	}
	for _, pv := range pvs.Items {
		uids[pv.Labels[swv1.LabelClaimUID]] = true
	}
	backing := &corev1.PersistentVolumeClaimList{}
	if err := r.Client.List(ctx, backing, client.InNamespace(r.Config.Namespace), sel); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing backing claims of %s: %w", key, err)
	}
	for _, b := range backing.Items {
		uids[b.Labels[swv1.LabelClaimUID]] = true
	}
	res := ctrl.Result{}
	for uid := range uids {
		if uid == "" || uid == keep {
			continue
		}
		r2, err := r.releaseIfClaimGone(ctx, key, uid, nil)
		if err != nil {
			return ctrl.Result{}, err
		}
		if r2.RequeueAfter > 0 && (res.RequeueAfter == 0 || r2.RequeueAfter < res.RequeueAfter) {
			res = r2
		}
	}
	return res, nil
}

// release removes a volume whose claim is gone: by its reclaim policy, everything, or
// everything but the backing claim and PV, which keep the data. The server goes first, so
// nothing writes while the rest is removed; the SharedVolume goes last.
func (r *Reconciler) release(ctx context.Context, key types.NamespacedName, uid string, sv *swv1.SharedVolume) (ctrl.Result, error) {
	ns, name := r.Config.Namespace, swv1.ObjectName(uid)
	if sv != nil && sv.Status.Phase != swv1.PhaseDeleting {
		prev := *sv.Status.DeepCopy()
		if _, err := r.finish(ctx, nil, sv, Observation{Deleting: true}, prev, ctrl.Result{}); err != nil {
			return ctrl.Result{}, err
		}
		r.step(ctx, StepReleaseBegin, key)
	}
	// The PV is read from the apiserver: a CSI PV not yet labelled is not in the cache.
	pv := &corev1.PersistentVolume{}
	if err := r.apiReader().Get(ctx, types.NamespacedName{Name: PVName(uid)}, pv); apierrors.IsNotFound(err) {
		pv = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting PV: %w", err)
	} else if pv.Labels[swv1.LabelClaimUID] != uid && !isVolumePV(pv, uid) {
		pv = nil // not this volume's: never touch it
	}
	backing := &corev1.PersistentVolumeClaim{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, backing); apierrors.IsNotFound(err) {
		backing = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting backing claim: %w", err)
	} else if backing.Labels[swv1.LabelClaimUID] != uid {
		backing = nil
	}
	policy := corev1.PersistentVolumeReclaimRetain
	switch {
	case pv != nil:
		policy = pv.Spec.PersistentVolumeReclaimPolicy
	case backing != nil && backing.Annotations[swv1.AnnotationReclaimPolicy] == string(corev1.PersistentVolumeReclaimDelete):
		policy = corev1.PersistentVolumeReclaimDelete
	}
	retain := policy != corev1.PersistentVolumeReclaimDelete

	pending := false
	for _, obj := range []client.Object{
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
	} {
		gone, err := r.deleteOurs(ctx, obj, uid)
		if err != nil {
			return ctrl.Result{}, err
		}
		pending = pending || !gone
	}
	if pending {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	r.step(ctx, StepServerGone, key)
	for _, obj := range []client.Object{
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
	} {
		if _, err := r.deleteOurs(ctx, obj, uid); err != nil {
			return ctrl.Result{}, err
		}
	}
	regarding := client.Object(nil)
	if pv != nil {
		regarding = pv
	}
	if retain {
		// The data stays; unprotect the backing claim so that an operator can remove it later.
		if backing != nil {
			if err := r.unprotect(ctx, backing); err != nil {
				return ctrl.Result{}, err
			}
		}
		r.event(regarding, corev1.EventTypeNormal, ReasonRetained, "Delete", fmt.Sprintf(
			"reclaim policy %s: backing claim %s/%s keeps the data and the PV is kept; the NFS server was stopped", policy, ns, name))
	} else {
		// A CSI PV is external-provisioner's: it deletes it once DeleteVolume saw this done.
		objs := []client.Object{&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}
		if pv == nil || !isVolumePV(pv, uid) {
			objs = append(objs, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: PVName(uid)}})
		}
		for _, obj := range objs {
			if _, err := r.deleteOurs(ctx, obj, uid); err != nil {
				return ctrl.Result{}, err
			}
		}
		r.event(regarding, corev1.EventTypeNormal, ReasonDeleted, "Delete", fmt.Sprintf("deleted NFS server, service, PV and backing claim %s/%s", ns, name))
	}
	if sv != nil {
		if controllerutil.RemoveFinalizer(sv, swv1.Finalizer) {
			if err := r.Client.Update(ctx, sv); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, fmt.Errorf("removing SharedVolume finalizer: %w", err)
			}
		}
		if err := r.Client.Delete(ctx, sv); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("deleting SharedVolume: %w", err)
		}
	}
	r.step(ctx, StepReleased, key)
	log.FromContext(ctx).Info("volume released", "uid", uid, "reclaimPolicy", policy)
	return ctrl.Result{}, nil
}

// recreateView answers a deleted SharedVolume of a live claim: it is ShareWarden's view of the
// volume, not the volume, so it is made again at once, with its status (fenced nodes and
// failover history included), and the claim gets an Event saying how to delete the volume.
// While the claim itself is being deleted (a namespace deletion), the finalizer stays and the
// claim's own deletion releases the volume.
func (r *Reconciler) recreateView(ctx context.Context, claim *corev1.PersistentVolumeClaim, sv *swv1.SharedVolume) (ctrl.Result, error) {
	if claim.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	status := *sv.Status.DeepCopy()
	if controllerutil.RemoveFinalizer(sv, swv1.Finalizer) {
		if err := r.Client.Update(ctx, sv); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("letting the deleted SharedVolume go: %w", err)
		}
	}
	fresh := SharedVolumeFor(claim, sv.Spec.BackingStorageClass)
	if err := r.Client.Create(ctx, fresh); apierrors.IsAlreadyExists(err) {
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil // the old one is not gone yet
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("recreating SharedVolume: %w", err)
	}
	fresh.Status = status
	if err := r.Client.Status().Update(ctx, fresh); err != nil {
		return ctrl.Result{}, fmt.Errorf("restoring SharedVolume status: %w", err)
	}
	r.Metrics.problem(ReasonViewRecreated)
	r.event(claim, corev1.EventTypeWarning, ReasonViewRecreated, "Repair", fmt.Sprintf(
		"SharedVolume %s/%s was deleted and has been recreated: it is ShareWarden's view of this volume, which kept serving. To delete the volume, delete this claim",
		sv.Namespace, sv.Name))
	return ctrl.Result{}, nil
}

// deleteOurs deletes obj if it carries the volume's UID label, lifting the volume's protection
// finalizer, and tells whether it is gone.
func (r *Reconciler) deleteOurs(ctx context.Context, obj client.Object, uid string) (bool, error) {
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); apierrors.IsNotFound(err) {
		return true, nil
	} else if err != nil {
		return false, fmt.Errorf("getting %s: %w", describe(obj), err)
	}
	if obj.GetLabels()[swv1.LabelClaimUID] != uid {
		return true, nil // someone else's object with our name: leave it alone
	}
	if err := r.unprotect(ctx, obj); err != nil {
		return false, err
	}
	if obj.GetDeletionTimestamp() != nil {
		return false, nil
	}
	u := obj.GetUID()
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &u}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting %s: %w", describe(obj), err)
	}
	return false, nil
}

// unprotect lifts the volume-protection finalizer.
func (r *Reconciler) unprotect(ctx context.Context, obj client.Object) error {
	if !controllerutil.ContainsFinalizer(obj, swv1.FinalizerVolumeProtection) {
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(obj, swv1.FinalizerVolumeProtection)
	if err := r.Client.Patch(ctx, obj, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("lifting the protection of %s: %w", describe(obj), err)
	}
	return nil
}

// ErrClaimExists says a volume's claim is still there, so its data must not be released.
var ErrClaimExists = errors.New("the volume's claim still exists")

// ReleaseVolume releases the volume of the claim with this UID now, if the apiserver confirms
// the claim is gone: the CSI DeleteVolume's path, run alongside the reconcile's own (both are
// idempotent). It tells whether the release is done: the server is gone and the backing claim
// deleted or, as the reclaim policy says, retained.
func (r *Reconciler) ReleaseVolume(ctx context.Context, uid string) (bool, error) {
	backing := &corev1.PersistentVolumeClaim{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Config.Namespace, Name: swv1.ObjectName(uid)}, backing); apierrors.IsNotFound(err) {
		return true, nil // nothing holds data any more
	} else if err != nil {
		return false, fmt.Errorf("getting backing claim: %w", err)
	}
	key, ok := claimKeyFromLabels(backing)
	if !ok || backing.Labels[swv1.LabelClaimUID] != uid {
		return false, fmt.Errorf("backing claim %s/%s does not carry the labels of the volume it serves", backing.Namespace, backing.Name)
	}
	gone, err := r.claimGone(ctx, key, uid)
	if err != nil {
		return false, err
	}
	if !gone {
		return false, fmt.Errorf("%w: %s (delete the claim to delete the volume)", ErrClaimExists, key)
	}
	sv := &swv1.SharedVolume{}
	if err := r.Client.Get(ctx, key, sv); apierrors.IsNotFound(err) {
		sv = nil
	} else if err != nil {
		return false, fmt.Errorf("getting SharedVolume: %w", err)
	} else if sv.Spec.ClaimUID != uid {
		sv = nil
	}
	res, err := r.release(ctx, key, uid, sv)
	if err != nil {
		return false, err
	}
	return res.IsZero(), nil
}
