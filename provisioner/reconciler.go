package provisioner

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
)

// Event reasons on the claim (and, once the claim is gone, on the PV).
const (
	ReasonBackingClaimCreated = "BackingClaimCreated"
	ReasonBackingClaimPending = "BackingClaimPending"
	ReasonServiceCreated      = "ServiceCreated"
	ReasonServerStarting      = "ServerStarting"
	ReasonServerReady         = "ServerReady"
	ReasonServerNotReady      = "ServerNotReady"
	ReasonProvisioned         = "Provisioned"
	ReasonResizing            = "Resizing"
	ReasonResized             = "Resized"
	ReasonCannotExpand        = "BackingClassCannotExpand"
	ReasonInvalidClass        = "InvalidClassParameters"
	ReasonNoBackingClass      = "NoBackingClass"
	ReasonBackingClassMissing = "BackingClassMissing"
	ReasonManagedClassMissing = "ManagedClassMissing"
	ReasonConflict            = "ObjectConflict"
	ReasonDeleted             = "VolumeDeleted"
	ReasonRetained            = "VolumeRetained"
)

// Config is what the reconciler needs from the controller's options.
type Config struct {
	// Namespace holds backing claims, server pods and Services (ShareWarden's own namespace),
	// unless BackingInClaimNamespace puts them next to each claim.
	Namespace               string
	BackingInClaimNamespace bool
	Server                  ServerConfig
	// UnfenceSettle is how long a fenced node must be Ready again before a volume forgets it.
	UnfenceSettle time.Duration
}

// Reconciler turns each claim on a ShareWarden-managed class into a backing claim, an NFS
// server pod, a Service and a bound NFS PV, and removes or retains them when the claim goes.
// It is keyed by the claim's namespace/name, which is also its SharedVolume's.
type Reconciler struct {
	Client client.Client
	// Reader reads past the cache; Services and PVs are cached only when ShareWarden made them,
	// so a name clash with someone else's object is checked here.
	Reader   client.Reader
	Recorder events.EventRecorder
	Metrics  *Metrics
	Config   Config
	Now      func() time.Time
}

// problemRequeue is how soon a blocked volume is looked at again when no watch will tell.
const problemRequeue = 15 * time.Second

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	sv := &swv1.SharedVolume{}
	if err := r.Client.Get(ctx, req.NamespacedName, sv); apierrors.IsNotFound(err) {
		sv = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting SharedVolume: %w", err)
	}
	claim := &corev1.PersistentVolumeClaim{}
	if err := r.Client.Get(ctx, req.NamespacedName, claim); apierrors.IsNotFound(err) {
		claim = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting claim: %w", err)
	}
	if claim != nil {
		managed, err := r.isManaged(ctx, claim)
		if err != nil {
			return ctrl.Result{}, err
		}
		if !managed {
			claim = nil
		}
	}
	// The claim this SharedVolume served is gone (or replaced by a new one of the same name):
	// clean up first; a new claim is provisioned once the old volume is gone.
	if sv != nil && (claim == nil || string(claim.UID) != sv.Spec.ClaimUID) {
		return r.cleanup(ctx, sv)
	}
	if claim == nil {
		return ctrl.Result{}, nil
	}
	return r.provision(ctx, claim, sv)
}

// isManaged tells whether the claim is on a class provisioned by ShareWarden.
func (r *Reconciler) isManaged(ctx context.Context, claim *corev1.PersistentVolumeClaim) (bool, error) {
	name := ptr.Deref(claim.Spec.StorageClassName, "")
	if name == "" {
		return false, nil
	}
	sc := &storagev1.StorageClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, sc); apierrors.IsNotFound(err) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("getting class %s: %w", name, err)
	}
	return sc.Provisioner == swv1.Provisioner, nil
}

func (r *Reconciler) namespaceFor(claim *corev1.PersistentVolumeClaim) string {
	if r.Config.BackingInClaimNamespace {
		return claim.Namespace
	}
	return r.Config.Namespace
}

func (r *Reconciler) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, sv *swv1.SharedVolume) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	obs := Observation{}
	vol, problem, err := r.resolve(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sv == nil {
		sv = SharedVolumeFor(claim, vol.BackingClass)
		if err := r.Client.Create(ctx, sv); err != nil {
			return ctrl.Result{}, fmt.Errorf("creating SharedVolume: %w", err)
		}
		logger.Info("volume seen", "claim", claim.Namespace+"/"+claim.Name, "uid", claim.UID)
	}
	prev := *sv.Status.DeepCopy()
	if problem != nil {
		obs.Problem = problem
		if prev.Phase == "" || prev.Conditions == nil || readyReason(prev) != problem.Reason {
			r.event(claim, corev1.EventTypeWarning, problem.Reason, "Provision", problem.Message)
		}
		return r.finish(ctx, sv, obs, prev, ctrl.Result{RequeueAfter: problemRequeue})
	}

	if obs.BackingClaim, obs.Problem, err = r.ensureBackingClaim(ctx, claim, vol); err != nil || obs.Problem != nil {
		return r.finishErr(ctx, sv, obs, prev, err)
	}
	if obs.Service, obs.Problem, err = r.ensureService(ctx, claim, vol); err != nil || obs.Problem != nil {
		return r.finishErr(ctx, sv, obs, prev, err)
	}
	if err := r.observeLease(ctx, vol, prev, &obs); err != nil {
		return ctrl.Result{}, err
	}
	// A fenced server's node goes into the status before a replacement exists, so the
	// scheduler extender keeps the replacement off it.
	if obs.LeaseExpired && obs.FencedNode != "" && !contains(prev.FencedNodes, obs.FencedNode) {
		return r.finish(ctx, sv, obs, prev, ctrl.Result{RequeueAfter: 100 * time.Millisecond})
	}
	vol.AvoidNodes = prev.FencedNodes
	if obs.ServerPod, obs.Problem, err = r.ensureServer(ctx, claim, vol, prev); err != nil || obs.Problem != nil {
		return r.finishErr(ctx, sv, obs, prev, err)
	}
	if obs.PV, obs.Problem, err = r.ensurePV(ctx, claim, vol, obs); err != nil || obs.Problem != nil {
		return r.finishErr(ctx, sv, obs, prev, err)
	}
	obs.ClaimBound = obs.PV != nil && claim.Status.Phase == corev1.ClaimBound && claim.Spec.VolumeName == obs.PV.Name
	if obs.ClaimBound && obs.PV != nil {
		if err := r.syncClaimCapacity(ctx, claim, obs.PV); err != nil {
			return ctrl.Result{}, err
		}
	}
	if obs.Consumers, err = r.countConsumers(ctx, claim); err != nil {
		return ctrl.Result{}, err
	}
	res := ctrl.Result{}
	if len(prev.FencedNodes) > 0 {
		res.RequeueAfter = r.Config.UnfenceSettle/2 + time.Second // to forget nodes once settled
	}
	return r.finish(ctx, sv, obs, prev, res)
}

// observeLease reads the server's lease: who holds it, and whether the Fencer released it from
// a holder that stopped renewing (and off which node).
func (r *Reconciler) observeLease(ctx context.Context, vol Volume, prev swv1.SharedVolumeStatus, obs *Observation) error {
	ns, _ := vol.ServerKey()
	lease := &coordinationv1.Lease{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: fencing.LeaseName(vol.uid())}, lease); apierrors.IsNotFound(err) {
		lease = nil
	} else if err != nil {
		return fmt.Errorf("getting server lease: %w", err)
	}
	if lease != nil {
		obs.Lease = &swv1.LeaseStatus{Holder: ptr.Deref(lease.Spec.HolderIdentity, ""), RenewTime: lease.Spec.RenewTime}
		if obs.Lease.Holder == "" && lease.Annotations[fencing.AnnotationFencedHolder] != "" {
			obs.LeaseExpired = true
			obs.FencedNode = lease.Annotations[fencing.AnnotationFencedNode]
		}
	}
	for _, name := range prev.FencedNodes {
		node := &corev1.Node{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, node); apierrors.IsNotFound(err) {
			obs.UnfencedNodes = append(obs.UnfencedNodes, name)
			continue
		} else if err != nil {
			return fmt.Errorf("getting node %s: %w", name, err)
		}
		var fencedAt time.Time
		if f := prev.LastFailover; f != nil && f.FromNode == name && f.FencedTime != nil {
			fencedAt = f.FencedTime.Time
		}
		if ok, _ := fencing.Unfenceable(node, fencedAt, r.now(), r.Config.UnfenceSettle); ok && node.Labels[swv1.LabelNodeFenced] != swv1.FencedTrue {
			obs.UnfencedNodes = append(obs.UnfencedNodes, name)
		}
	}
	return nil
}

func readyReason(st swv1.SharedVolumeStatus) string {
	for _, c := range st.Conditions {
		if c.Type == swv1.ConditionReady {
			return c.Reason
		}
	}
	return ""
}

// resolve gathers the facts a volume needs: the managed class's parameters and the backing class.
func (r *Reconciler) resolve(ctx context.Context, claim *corev1.PersistentVolumeClaim) (Volume, *Problem, error) {
	vol := Volume{Claim: claim, Namespace: r.namespaceFor(claim), Server: r.Config.Server}
	managed := &storagev1.StorageClass{}
	name := ptr.Deref(claim.Spec.StorageClassName, "")
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, managed); apierrors.IsNotFound(err) {
		return vol, &Problem{Reason: ReasonManagedClassMissing, Message: fmt.Sprintf("storage class %s does not exist", name)}, nil
	} else if err != nil {
		return vol, nil, fmt.Errorf("getting class %s: %w", name, err)
	}
	params, err := ParseClassParams(managed)
	vol.Params = params
	if err != nil {
		return vol, &Problem{Reason: ReasonInvalidClass, Message: err.Error() + "; fix the class parameters", Fatal: true}, nil
	}
	vol.BackingClass = claim.Annotations[swv1.AnnotationBackingStorageClass]
	if vol.BackingClass == "" {
		vol.BackingClass = params.BackingStorageClass
	}
	if vol.BackingClass == "" {
		return vol, &Problem{Reason: ReasonNoBackingClass, Fatal: true, Message: fmt.Sprintf(
			"claim names no backing class and class %s has no %q parameter; set one of them", name, swv1.ParameterBackingStorageClass)}, nil
	}
	if vol.BackingClass == name {
		return vol, &Problem{Reason: ReasonNoBackingClass, Fatal: true, Message: "the managed class cannot back itself; name a ReadWriteOnce class"}, nil
	}
	backing := &storagev1.StorageClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: vol.BackingClass}, backing); apierrors.IsNotFound(err) {
		return vol, &Problem{Reason: ReasonBackingClassMissing, Message: fmt.Sprintf(
			"backing storage class %s does not exist; create it or change the claim's %s annotation", vol.BackingClass, swv1.AnnotationBackingStorageClass)}, nil
	} else if err != nil {
		return vol, nil, fmt.Errorf("getting backing class %s: %w", vol.BackingClass, err)
	}
	return vol, nil, nil
}

// ensureBackingClaim creates the backing claim, or checks the one found is ours and big enough.
func (r *Reconciler) ensureBackingClaim(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume) (*corev1.PersistentVolumeClaim, *Problem, error) {
	want := BackingClaim(vol)
	got := &corev1.PersistentVolumeClaim{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	if apierrors.IsNotFound(err) {
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			r.event(claim, corev1.EventTypeWarning, ReasonBackingClaimPending, "Provision", "cannot create backing claim: "+err.Error())
			return nil, nil, fmt.Errorf("creating backing claim: %w", err)
		}
		r.event(claim, corev1.EventTypeNormal, ReasonBackingClaimCreated, "Provision",
			fmt.Sprintf("created backing claim %s/%s (%s, class %s)", want.Namespace, want.Name, quantity(vol.requestedSize()), vol.BackingClass))
		return want, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting backing claim: %w", err)
	}
	if p := r.checkOurs(got, vol); p != nil {
		return nil, p, nil
	}
	// Expansion: the backing claim follows the RWX claim's request.
	size, have := vol.requestedSize(), got.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.Cmp(have) > 0 {
		backing := &storagev1.StorageClass{}
		if err := r.Client.Get(ctx, types.NamespacedName{Name: vol.BackingClass}, backing); err != nil {
			return nil, nil, fmt.Errorf("getting backing class: %w", err)
		}
		if !ptr.Deref(backing.AllowVolumeExpansion, false) {
			r.event(claim, corev1.EventTypeWarning, ReasonCannotExpand, "Resize", fmt.Sprintf(
				"backing class %s does not allow volume expansion; the volume stays %s", vol.BackingClass, have.String()))
			return got, nil, nil
		}
		patch := client.MergeFrom(got.DeepCopy())
		got.Spec.Resources.Requests[corev1.ResourceStorage] = size
		if err := r.Client.Patch(ctx, got, patch); err != nil {
			return nil, nil, fmt.Errorf("resizing backing claim: %w", err)
		}
		r.event(claim, corev1.EventTypeNormal, ReasonResizing, "Resize", fmt.Sprintf("resizing backing claim %s/%s from %s to %s", got.Namespace, got.Name, have.String(), size.String()))
	}
	return got, nil, nil
}

// checkOurs refuses to wire a claim to an object the controller did not create for it.
func (r *Reconciler) checkOurs(obj client.Object, vol Volume) *Problem {
	if obj.GetLabels()[swv1.LabelClaimUID] == vol.uid() && obj.GetLabels()[swv1.LabelManagedBy] == swv1.ManagedByController {
		return nil
	}
	kind := fmt.Sprintf("%T", obj)
	return &Problem{Reason: ReasonConflict, Fatal: true, Message: fmt.Sprintf(
		"%s %s/%s exists but was not created by ShareWarden for this claim; refusing to use it (delete or rename it)",
		kind, obj.GetNamespace(), obj.GetName())}
}

// created returns want after a Create, or, when the name was taken meanwhile or by an object
// the cache does not hold, the object there now, checked to be ours.
func (r *Reconciler) created(ctx context.Context, want client.Object, vol Volume, createErr error) (*Problem, error) {
	if createErr == nil {
		return nil, nil
	}
	if !apierrors.IsAlreadyExists(createErr) {
		return nil, createErr
	}
	reader := r.Reader
	if reader == nil {
		reader = r.Client
	}
	if err := reader.Get(ctx, client.ObjectKeyFromObject(want), want); err != nil {
		return nil, err
	}
	return r.checkOurs(want, vol), nil
}

// ensureService creates the Service once; it is never recreated, so its ClusterIP, which
// clients mount, stays the same for the volume's whole life.
func (r *Reconciler) ensureService(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume) (*corev1.Service, *Problem, error) {
	want := Service(vol)
	got := &corev1.Service{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	if apierrors.IsNotFound(err) {
		if p, err := r.created(ctx, want, vol, r.Client.Create(ctx, want)); err != nil || p != nil {
			return nil, p, wrapErr("creating service", err)
		}
		r.event(claim, corev1.EventTypeNormal, ReasonServiceCreated, "Provision",
			fmt.Sprintf("created service %s/%s at %s", want.Namespace, want.Name, want.Spec.ClusterIP))
		return want, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting service: %w", err)
	}
	return got, r.checkOurs(got, vol), nil
}

// ensureServer keeps exactly one server pod. The pod's fixed name makes the apiserver refuse a
// second one; a finished pod is deleted so the next pass starts a fresh one.
func (r *Reconciler) ensureServer(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, prev swv1.SharedVolumeStatus) (*corev1.Pod, *Problem, error) {
	want := ServerPod(vol)
	got := &corev1.Pod{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	if apierrors.IsNotFound(err) {
		if err := r.Client.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			r.event(claim, corev1.EventTypeWarning, ReasonServerNotReady, "Provision", "cannot create NFS server pod: "+err.Error())
			return nil, nil, fmt.Errorf("creating server pod: %w", err)
		}
		r.event(claim, corev1.EventTypeNormal, ReasonServerStarting, "Provision", fmt.Sprintf("starting NFS server pod %s/%s", want.Namespace, want.Name))
		return want, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting server pod: %w", err)
	}
	if p := r.checkOurs(got, vol); p != nil {
		return nil, p, nil
	}
	if got.DeletionTimestamp == nil && (got.Status.Phase == corev1.PodFailed || got.Status.Phase == corev1.PodSucceeded) {
		if err := r.Client.Delete(ctx, got, client.Preconditions{UID: &got.UID}); err != nil && !apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("deleting finished server pod: %w", err)
		}
		r.event(claim, corev1.EventTypeWarning, ReasonServerNotReady, "Provision", fmt.Sprintf("server pod %s ended (%s); starting a new one", got.Name, got.Status.Phase))
		return got, nil, nil
	}
	ready := podReady(got)
	switch {
	case ready && !prev.Server.Ready:
		r.event(claim, corev1.EventTypeNormal, ReasonServerReady, "Provision", fmt.Sprintf("NFS server %s ready on node %s", got.Name, got.Spec.NodeName))
	case !ready && prev.Server.Ready:
		r.event(claim, corev1.EventTypeWarning, ReasonServerNotReady, "Serve", fmt.Sprintf("NFS server %s on node %s is not ready", got.Name, got.Spec.NodeName))
	}
	return got, nil, nil
}

// ensurePV creates the NFS PV once the server has been Ready, so that a Bound claim means a
// serving volume; afterwards it keeps the PV's capacity in step with the backing volume.
func (r *Reconciler) ensurePV(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, obs Observation) (*corev1.PersistentVolume, *Problem, error) {
	got := &corev1.PersistentVolume{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: PVName(vol.uid())}, got)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("getting PV: %w", err)
	}
	capacity := backingCapacity(obs.BackingClaim, vol.requestedSize())
	if apierrors.IsNotFound(err) {
		if !podReady(obs.ServerPod) || obs.BackingClaim.Status.Phase != corev1.ClaimBound {
			return nil, nil, nil
		}
		want := PersistentVolume(vol, obs.Service.Spec.ClusterIP, capacity)
		if p, err := r.created(ctx, want, vol, r.Client.Create(ctx, want)); err != nil || p != nil {
			return nil, p, wrapErr("creating PV", err)
		}
		r.event(claim, corev1.EventTypeNormal, ReasonProvisioned, "Provision",
			fmt.Sprintf("provisioned NFS volume %s (%s) at %s:%s", want.Name, quantity(capacity), obs.Service.Spec.ClusterIP, ExportPseudoPath))
		return want, nil, nil
	}
	if p := r.checkOurs(got, vol); p != nil {
		return nil, p, nil
	}
	if have := got.Spec.Capacity[corev1.ResourceStorage]; capacity.Cmp(have) > 0 {
		patch := client.MergeFrom(got.DeepCopy())
		got.Spec.Capacity[corev1.ResourceStorage] = capacity
		if err := r.Client.Patch(ctx, got, patch); err != nil {
			return nil, nil, fmt.Errorf("resizing PV: %w", err)
		}
	}
	return got, nil, nil
}

func backingCapacity(backing *corev1.PersistentVolumeClaim, requested resource.Quantity) resource.Quantity {
	if backing != nil {
		if c, ok := backing.Status.Capacity[corev1.ResourceStorage]; ok {
			return c
		}
	}
	return requested
}

// syncClaimCapacity finishes a resize: ShareWarden is the resizer of its class, so it reports
// the grown capacity on the claim once the PV has it.
func (r *Reconciler) syncClaimCapacity(ctx context.Context, claim *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) error {
	pvCap := pv.Spec.Capacity[corev1.ResourceStorage]
	have, ok := claim.Status.Capacity[corev1.ResourceStorage]
	if !ok || pvCap.Cmp(have) <= 0 {
		return nil
	}
	patch := client.MergeFrom(claim.DeepCopy())
	claim.Status.Capacity[corev1.ResourceStorage] = pvCap
	claim.Status.AllocatedResources = nil
	claim.Status.AllocatedResourceStatuses = nil
	if err := r.Client.Status().Patch(ctx, claim, patch); err != nil {
		return fmt.Errorf("reporting new capacity on claim: %w", err)
	}
	r.event(claim, corev1.EventTypeNormal, ReasonResized, "Resize", fmt.Sprintf("volume resized from %s to %s", have.String(), pvCap.String()))
	return nil
}

// countConsumers counts running pods in the claim's namespace that mount the claim.
func (r *Reconciler) countConsumers(ctx context.Context, claim *corev1.PersistentVolumeClaim) (int32, error) {
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(claim.Namespace), client.MatchingFields{IndexPodClaims: claim.Name}); err != nil {
		return 0, fmt.Errorf("listing consumers: %w", err)
	}
	var n int32
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n, nil
}

// finishErr records what was observed so far, then returns err (if any) for a retry.
func (r *Reconciler) finishErr(ctx context.Context, sv *swv1.SharedVolume, obs Observation, prev swv1.SharedVolumeStatus, err error) (ctrl.Result, error) {
	if err != nil {
		return ctrl.Result{}, err
	}
	if obs.Problem != nil {
		r.event(sv, corev1.EventTypeWarning, obs.Problem.Reason, "Provision", obs.Problem.Message)
	}
	return r.finish(ctx, sv, obs, prev, ctrl.Result{RequeueAfter: problemRequeue})
}

// finish writes the status computed from obs when it changed.
func (r *Reconciler) finish(ctx context.Context, sv *swv1.SharedVolume, obs Observation, prev swv1.SharedVolumeStatus, res ctrl.Result) (ctrl.Result, error) {
	obs.Generation = sv.Generation
	st := ComputeStatus(obs, prev, metav1.NewTime(r.now()))
	if apiequality.Semantic.DeepEqual(st, prev) {
		return res, nil
	}
	if st.Phase != prev.Phase {
		log.FromContext(ctx).Info("volume phase changed", "from", prev.Phase, "to", st.Phase)
		if st.Phase == swv1.PhaseReady && prev.Phase != swv1.PhaseReady {
			if f := st.LastFailover; f != nil && f.Duration != nil && f.EndTime != nil && (prev.LastFailover == nil || prev.LastFailover.EndTime == nil) {
				r.event(sv, corev1.EventTypeNormal, "FailoverComplete", "Failover", fmt.Sprintf(
					"server moved from %s to %s in %s", f.FromNode, f.ToNode, f.Duration.Round(time.Millisecond)))
			}
			r.Metrics.observeReady(sv, st, r.now())
		}
	}
	sv.Status = st
	if err := r.Client.Status().Update(ctx, sv); apierrors.IsConflict(err) {
		// Our cache is behind our own last write; the watch brings the new version shortly.
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("updating SharedVolume status: %w", err)
	}
	return res, nil
}

// cleanup removes a volume whose claim is gone: by the PV's reclaim policy, everything, or
// everything but the backing claim and PV, which keep the data. The SharedVolume goes last.
func (r *Reconciler) cleanup(ctx context.Context, sv *swv1.SharedVolume) (ctrl.Result, error) {
	uid := sv.Spec.ClaimUID
	ns := r.Config.Namespace
	if sv.Status.BackingClaim != nil {
		ns = sv.Status.BackingClaim.Namespace
	} else if r.Config.BackingInClaimNamespace {
		ns = sv.Namespace
	}
	if sv.Status.Phase != swv1.PhaseDeleting {
		prev := *sv.Status.DeepCopy()
		if _, err := r.finish(ctx, sv, Observation{Deleting: true}, prev, ctrl.Result{}); err != nil {
			return ctrl.Result{}, err
		}
	}
	pv := &corev1.PersistentVolume{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: PVName(uid)}, pv); apierrors.IsNotFound(err) {
		pv = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting PV: %w", err)
	} else if pv.Labels[swv1.LabelClaimUID] != uid {
		pv = nil // not ours: never touch it
	}
	retain := pv != nil && pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRetain

	name := objectName(uid)
	// The server goes first, so nothing writes while the rest is removed.
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
	if retain {
		r.event(pv, corev1.EventTypeNormal, ReasonRetained, "Delete", fmt.Sprintf(
			"reclaim policy Retain: backing claim %s/%s keeps the data and PV %s is kept; the NFS server was stopped", ns, name, pv.Name))
	} else {
		for _, obj := range []client.Object{
			&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: PVName(uid)}},
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		} {
			if _, err := r.deleteOurs(ctx, obj, uid); err != nil {
				return ctrl.Result{}, err
			}
		}
		if pv != nil {
			r.event(pv, corev1.EventTypeNormal, ReasonDeleted, "Delete", fmt.Sprintf("deleted NFS server, service, PV and backing claim %s/%s", ns, name))
		}
	}
	if controllerutil.RemoveFinalizer(sv, swv1.Finalizer) {
		if err := r.Client.Update(ctx, sv); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("removing SharedVolume finalizer: %w", err)
		}
	}
	if err := r.Client.Delete(ctx, sv); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("deleting SharedVolume: %w", err)
	}
	log.FromContext(ctx).Info("volume removed", "uid", uid, "retained", retain)
	return ctrl.Result{}, nil
}

// deleteOurs deletes obj if it carries the volume's UID label, and tells whether it is gone.
func (r *Reconciler) deleteOurs(ctx context.Context, obj client.Object, uid string) (bool, error) {
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); apierrors.IsNotFound(err) {
		return true, nil
	} else if err != nil {
		return false, fmt.Errorf("getting %T %s: %w", obj, obj.GetName(), err)
	}
	if obj.GetLabels()[swv1.LabelClaimUID] != uid {
		return true, nil // someone else's object with our name: leave it alone
	}
	if obj.GetDeletionTimestamp() != nil {
		return false, nil
	}
	u := obj.GetUID()
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &u}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting %T %s: %w", obj, obj.GetName(), err)
	}
	return false, nil
}

func (r *Reconciler) event(regarding runtime.Object, typ, reason, action, msg string) {
	if r.Recorder == nil || regarding == nil || isNilPtr(regarding) {
		return
	}
	r.Recorder.Eventf(regarding, nil, typ, reason, action, "%s", msg)
}

func isNilPtr(o runtime.Object) bool {
	switch v := o.(type) {
	case *corev1.PersistentVolume:
		return v == nil
	case *corev1.PersistentVolumeClaim:
		return v == nil
	}
	return false
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

func quantity(q resource.Quantity) string { return q.String() }
