package provisioner

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
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

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/report"
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
	ReasonManagedClassBack    = "ManagedClassRestored"
	ReasonConflict            = "ObjectConflict"
	ReasonBadDataSource       = "InvalidDataSource"
	ReasonServiceIPTaken      = "ServiceIPTaken"
	ReasonServiceIPChanged    = "ServiceIPChanged"
	ReasonObjectDeleting      = "DeletionHeld"
	ReasonLeaseRecreated      = "LeaseRecreated"
	ReasonViewRecreated       = "SharedVolumeRecreated"
	ReasonDeleted             = "VolumeDeleted"
	ReasonRetained            = "VolumeRetained"
	ReasonCannotSnapshot      = "CannotSnapshot"
	ReasonServerRolling       = "ServerRolling"
	ReasonServerRolled        = "ServerRolled"
)

// Config is what the reconciler needs from the controller's options.
type Config struct {
	// Namespace holds backing claims, server pods, Services and Leases (ShareWarden's own).
	Namespace string
	Server    ServerConfig
	// UnfenceSettle is how long a fenced node must be Ready again before a volume forgets it.
	UnfenceSettle time.Duration
	// LeaseDuration is written into a server's Lease the controller recreates for it.
	LeaseDuration time.Duration
	// NetworkPolicy makes a NetworkPolicy per volume from its client allowlist.
	NetworkPolicy bool
}

// Step is one write of the provisioning path, in order.
type Step string

// The provisioning steps, in the order a new volume takes them, and the release steps.
const (
	StepSharedVolume Step = "SharedVolumeCreated"
	StepBackingClaim Step = "BackingClaimCreated"
	StepService      Step = "ServiceCreated"
	StepServerPod    Step = "ServerPodCreated"
	StepPV           Step = "PVCreated"
	StepReleaseBegin Step = "ReleaseStarted"
	StepServerGone   Step = "ServerDeleted"
	StepReleased     Step = "Released"
)

// Reconciler turns each claim on a ShareWarden-managed class into a backing claim, an NFS
// server pod, a Service and a bound NFS PV, and releases them when, and only when, the user
// deletes the claim (docs/deletion in README: a missing class, Service, pod, Lease or
// SharedVolume is repaired or reported, never a reason to delete). It is keyed by the claim's
// namespace/name, which is also its SharedVolume's.
type Reconciler struct {
	Client client.Client
	// Reader reads past the cache: a claim missing from the cache is confirmed gone here before
	// anything is released, and Services and PVs are cached only when ShareWarden made them,
	// so a name clash with someone else's object is checked here too.
	Reader   client.Reader
	Recorder events.EventRecorder
	Metrics  *Metrics
	Config   Config
	Now      func() time.Time
	// OnStep, when set, is called after each step's write succeeded (for step metrics and for
	// the crash-at-every-step tests).
	OnStep func(ctx context.Context, step Step, claim types.NamespacedName)
	// rolls lets one volume's server roll at a time (see rollGate).
	rolls rollGate
	// holds lets a provisioning volume's progress wait for the rest of its burst (ProgressOnly).
	holds progressHold
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
	if sv != nil {
		if claim == nil || string(claim.UID) != sv.Spec.ClaimUID {
			// The claim this SharedVolume served looks gone or replaced: release its volume once
			// the apiserver confirms it; a new claim of the same name comes after.
			return r.releaseIfClaimGone(ctx, req.NamespacedName, sv.Spec.ClaimUID, sv)
		}
		if sv.DeletionTimestamp != nil {
			return r.recreateView(ctx, claim, sv)
		}
		return r.provision(ctx, claim, sv)
	}
	if claim == nil {
		return r.releaseOrphans(ctx, req.NamespacedName, "")
	}
	managed, err := r.isManaged(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !managed {
		return r.releaseOrphans(ctx, req.NamespacedName, string(claim.UID))
	}
	if res, err := r.releaseOrphans(ctx, req.NamespacedName, string(claim.UID)); err != nil || !res.IsZero() {
		return res, err
	}
	return r.provision(ctx, claim, nil)
}

// isManaged tells whether ShareWarden provisions the claim: its class names ShareWarden's
// provisioner, or, while that class is missing, the claim is bound to a ShareWarden PV or was
// rewritten by the webhook.
func (r *Reconciler) isManaged(ctx context.Context, claim *corev1.PersistentVolumeClaim) (bool, error) {
	name := ptr.Deref(claim.Spec.StorageClassName, "")
	if name == "" {
		return false, nil
	}
	sc := &storagev1.StorageClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, sc); apierrors.IsNotFound(err) {
		return claim.Spec.VolumeName == PVName(string(claim.UID)) || claim.Annotations[swv1.AnnotationBackingStorageClass] != "", nil
	} else if err != nil {
		return false, fmt.Errorf("getting class %s: %w", name, err)
	}
	return swv1.IsManagedProvisioner(sc.Provisioner), nil
}

func (r *Reconciler) step(ctx context.Context, s Step, claim types.NamespacedName) {
	r.Metrics.observeStep(s)
	if r.OnStep != nil {
		r.OnStep(ctx, s, claim)
	}
}

func (r *Reconciler) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, sv *swv1.SharedVolume) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	key := client.ObjectKeyFromObject(claim)
	var prevStatus swv1.SharedVolumeStatus
	if sv != nil {
		prevStatus = sv.Status
	}
	obs := Observation{}
	// What this pass creates is told in one Event when it ends, however it ends.
	defer func() { r.tellMade(claim, obs.made) }()
	vol, problem, warnings, err := r.resolve(ctx, claim, prevStatus.StorageClass)
	if err != nil {
		return ctrl.Result{}, err
	}
	obs.Class, obs.Warnings = vol.class, warnings
	if sv == nil {
		sv = SharedVolumeFor(claim, vol.BackingClass)
		if err := r.Client.Create(ctx, sv); apierrors.IsAlreadyExists(err) {
			return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil // an old one still being removed
		} else if err != nil {
			return ctrl.Result{}, fmt.Errorf("creating SharedVolume: %w", err)
		}
		logger.Info("volume seen", "claim", key.String(), "uid", claim.UID)
		r.step(ctx, StepSharedVolume, key)
	}
	prev := *sv.Status.DeepCopy()
	if problem != nil {
		obs.Problem = problem
		if prev.Phase == "" || prev.Conditions == nil || readyReason(prev) != problem.Reason {
			r.warn(claim, problem, "Provision")
		}
		return r.finish(ctx, claim, sv, obs, prev, ctrl.Result{RequeueAfter: problemRequeue})
	}

	// The PV, once it exists, is the record of the address every mount uses.
	if obs.PV, obs.Problem, err = r.observePV(ctx, vol); err != nil || obs.Problem != nil {
		return r.blocked(ctx, claim, sv, obs, prev, err)
	}
	if obs.PV != nil {
		vol.ServiceIP = pvServer(obs.PV)
	}
	if obs.BackingClaim, obs.Problem, err = r.ensureBackingClaim(ctx, claim, vol, &obs); err != nil || obs.Problem != nil {
		return r.blocked(ctx, claim, sv, obs, prev, err)
	}
	if obs.Service, obs.Problem, err = r.ensureService(ctx, claim, vol, &obs); err != nil || obs.Problem != nil {
		return r.blocked(ctx, claim, sv, obs, prev, err)
	}
	if err := r.observeLease(ctx, vol, prev, &obs); err != nil {
		return ctrl.Result{}, err
	}
	// A fenced server's node goes into the status before a replacement exists, so the
	// scheduler extender keeps the replacement off it.
	if obs.LeaseExpired && obs.FencedNode != "" && !contains(prev.FencedNodes, obs.FencedNode) {
		return r.finish(ctx, claim, sv, obs, prev, ctrl.Result{RequeueAfter: 100 * time.Millisecond})
	}
	vol.AvoidNodes = prev.FencedNodes
	// The nodes this volume's servers were fenced off, the one just fenced included.
	fenced := append(slices.Clone(prev.FencedNodes), obs.FencedNode)
	if err := r.detachFenced(ctx, obs.BackingClaim, fenced); err != nil {
		return ctrl.Result{}, err
	}
	consumers, err := r.listConsumers(ctx, claim)
	if err != nil {
		return ctrl.Result{}, err
	}
	obs.Consumers = countRunning(consumers)
	if vol.Params.ClientAllowlist {
		if vol.AllowedClients, err = r.allowedClients(ctx, consumers, fenced); err != nil {
			return ctrl.Result{}, err
		}
	}
	obs.Access = &swv1.ClientAccess{Allowlist: vol.Params.ClientAllowlist, Clients: vol.AllowedClients}
	if obs.ServerPod, obs.Problem, err = r.ensureServer(ctx, claim, vol, prev, &obs); err != nil || obs.Problem != nil {
		return r.blocked(ctx, claim, sv, obs, prev, err)
	}
	if err := r.syncAllowedClients(ctx, obs.ServerPod, vol); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureNetworkPolicy(ctx, vol); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.ensureLease(ctx, claim, vol, prev, &obs); err != nil {
		return ctrl.Result{}, err
	}
	// A CSI volume's PV is external-provisioner's, made once CreateVolume saw the server Ready,
	// and external-resizer resizes it; a legacy volume's in-tree PV is the controller's.
	switch {
	case obs.PV == nil && !vol.CSI:
		if obs.PV, obs.Problem, err = r.createPV(ctx, claim, vol, obs); err != nil || obs.Problem != nil {
			return r.blocked(ctx, claim, sv, obs, prev, err)
		}
	case obs.PV != nil && obs.PV.Spec.CSI == nil:
		if err := r.resizePV(ctx, obs.PV, backingCapacity(obs.BackingClaim, vol.requestedSize())); err != nil {
			return ctrl.Result{}, err
		}
	}
	obs.ClaimBound = obs.PV != nil && claim.Status.Phase == corev1.ClaimBound && claim.Spec.VolumeName == obs.PV.Name
	if obs.ClaimBound && obs.PV != nil && obs.PV.Spec.CSI == nil {
		if err := r.syncClaimCapacity(ctx, claim, obs.PV); err != nil {
			return ctrl.Result{}, err
		}
	}
	res := ctrl.Result{}
	if len(prev.FencedNodes) > 0 {
		res.RequeueAfter = r.Config.UnfenceSettle/2 + time.Second // to forget nodes once settled
	}
	if len(obs.Warnings) > 0 {
		res.RequeueAfter = problemRequeue // a missing class is not watched by name
	}
	return r.finish(ctx, claim, sv, obs, prev, res)
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
	obs.leaseMissing = lease == nil
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

// ensureLease gives a running server whose Lease was deleted a new one in its own name, renewed
// now: a live server renews it as before, a dead one is fenced once it expires. Without it a
// server that died after its Lease was deleted would never be failed over. Only a lease seen
// held by this very pod is recreated: a server that never took one yet creates its own.
func (r *Reconciler) ensureLease(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, prev swv1.SharedVolumeStatus, obs *Observation) error {
	pod := obs.ServerPod
	if !obs.leaseMissing || pod == nil || pod.UID == "" || pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning ||
		prev.Lease == nil || prev.Lease.Holder != fencing.Identity(pod) {
		return nil
	}
	lease := fencing.LeaseFor(pod, vol.Labels(), r.Config.LeaseDuration, r.now())
	if err := r.Client.Create(ctx, lease); apierrors.IsAlreadyExists(err) {
		return nil // the server recreated it first
	} else if err != nil {
		return fmt.Errorf("recreating server lease: %w", err)
	}
	obs.Lease = &swv1.LeaseStatus{Holder: ptr.Deref(lease.Spec.HolderIdentity, ""), RenewTime: lease.Spec.RenewTime}
	r.event(claim, corev1.EventTypeWarning, ReasonLeaseRecreated, "Repair", fmt.Sprintf(
		"the Lease %s/%s of NFS server %s was deleted; recreated it in the server's name so that the server can go on renewing it and is failed over if it stops", lease.Namespace, lease.Name, pod.Name))
	return nil
}

// detachFenced keeps the backing disk off every node the volume was fenced off: the Fencer
// detaches it when it fences, and this catches a fencing cut short (a controller stopped after
// the release) before a replacement needs the disk.
func (r *Reconciler) detachFenced(ctx context.Context, backing *corev1.PersistentVolumeClaim, nodes []string) error {
	if backing == nil || backing.Spec.VolumeName == "" {
		return nil
	}
	for _, node := range nodes {
		if _, err := fencing.Detach(ctx, r.Client, backing.Spec.VolumeName, node); err != nil {
			return err
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

// resolve gathers the facts a volume needs: the managed class's parameters (or, while the class
// is missing, those last seen), the backing class's name and the backing claim's data source.
// A problem blocks provisioning; warnings do not.
func (r *Reconciler) resolve(ctx context.Context, claim *corev1.PersistentVolumeClaim, seen *swv1.ClassSnapshot) (Volume, *Problem, []Problem, error) {
	vol := Volume{Claim: claim, Namespace: r.Config.Namespace, Server: r.Config.Server}
	var warnings []Problem
	name := ptr.Deref(claim.Spec.StorageClassName, "")
	managed := &storagev1.StorageClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, managed); apierrors.IsNotFound(err) {
		msg := fmt.Sprintf("storage class %s does not exist", name)
		if seen == nil || seen.Name != name {
			return vol, &Problem{Reason: ReasonManagedClassMissing, Message: msg + "; recreate it (helm install) to provision this claim"}, nil, nil
		}
		managed = ClassFromSnapshot(seen)
		warnings = append(warnings, Problem{Reason: ReasonManagedClassMissing, Message: msg +
			"; the volume keeps serving with the class's last seen parameters, and nothing is deleted. Recreate the class (helm install) to resume reconciling with it"})
	} else if err != nil {
		return vol, nil, nil, fmt.Errorf("getting class %s: %w", name, err)
	}
	vol.class = SnapshotClass(managed)
	vol.CSI = managed.Provisioner == swv1.CSIDriverName
	params, err := ParseClassParams(managed)
	vol.Params = params
	if err != nil {
		return vol, &Problem{Reason: ReasonInvalidClass, Message: err.Error() + "; fix the class parameters", Fatal: true}, warnings, nil
	}
	vol.BackingClass = claim.Annotations[swv1.AnnotationBackingStorageClass]
	if vol.BackingClass == "" {
		vol.BackingClass = params.BackingStorageClass
	}
	if vol.BackingClass == "" {
		return vol, &Problem{Reason: ReasonNoBackingClass, Fatal: true, Message: fmt.Sprintf(
			"claim names no backing class and class %s has no %q parameter; set one of them", name, swv1.ParameterBackingStorageClass)}, warnings, nil
	}
	if vol.BackingClass == name {
		return vol, &Problem{Reason: ReasonNoBackingClass, Fatal: true, Message: "the managed class cannot back itself; name a ReadWriteOnce class"}, warnings, nil
	}
	ds, p, err := r.backingDataSource(ctx, claim, vol.BackingClass)
	if err != nil || p != nil {
		return vol, p, warnings, err
	}
	vol.DataSource = ds
	return vol, nil, warnings, nil
}

// backingDataSource maps the RWX claim's data source onto the backing claim's: a clone of
// another ShareWarden claim becomes a clone of that claim's backing claim, a restore of a
// ShareWarden VolumeSnapshot a restore of the backing snapshot it stands for. Anything else cannot
// be reached from ShareWarden's namespace (the webhook refuses it; this covers claims written
// while it was bypassed).
func (r *Reconciler) backingDataSource(ctx context.Context, claim *corev1.PersistentVolumeClaim, backingClass string) (*corev1.TypedLocalObjectReference, *Problem, error) {
	var group, kind, name string
	switch {
	case claim.Spec.DataSourceRef != nil:
		ref := claim.Spec.DataSourceRef
		group, kind, name = ptr.Deref(ref.APIGroup, ""), ref.Kind, ref.Name
		if ns := ptr.Deref(ref.Namespace, ""); ns != "" && ns != claim.Namespace {
			return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: "a data source in another namespace cannot be passed on to the backing claim; create the claim without it"}, nil
		}
	case claim.Spec.DataSource != nil:
		group, kind, name = ptr.Deref(claim.Spec.DataSource.APIGroup, ""), claim.Spec.DataSource.Kind, claim.Spec.DataSource.Name
	default:
		return nil, nil, nil
	}
	if group == snapshotv1.GroupName && kind == "VolumeSnapshot" {
		return r.snapshotDataSource(ctx, claim.Namespace, name, backingClass)
	}
	if group != "" || kind != "PersistentVolumeClaim" {
		return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: fmt.Sprintf(
			"data source %s %s cannot be reached from ShareWarden's namespace, where the backing claim lives; clone a ShareWarden ReadWriteMany claim or restore a snapshot of one instead, or create the claim empty", kind, name)}, nil
	}
	src := &corev1.PersistentVolumeClaim{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: claim.Namespace, Name: name}, src); apierrors.IsNotFound(err) {
		return nil, &Problem{Reason: ReasonBadDataSource, Message: fmt.Sprintf("the claim to clone, %s, does not exist (yet)", name)}, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting clone source %s: %w", name, err)
	}
	managed, err := r.isManaged(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	if !managed {
		return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: fmt.Sprintf(
			"claim %s is not a ShareWarden volume, so its data is not reachable from ShareWarden's namespace; clone a ShareWarden ReadWriteMany claim instead", name)}, nil
	}
	srcBacking := &corev1.PersistentVolumeClaim{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Config.Namespace, Name: swv1.ObjectName(string(src.UID))}, srcBacking); apierrors.IsNotFound(err) {
		return nil, &Problem{Reason: ReasonBadDataSource, Message: fmt.Sprintf("the backing claim of %s does not exist yet; the clone waits for it", name)}, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting the clone source's backing claim: %w", err)
	}
	if c := ptr.Deref(srcBacking.Spec.StorageClassName, ""); c != backingClass {
		return nil, &Problem{Reason: ReasonBadDataSource, Fatal: true, Message: fmt.Sprintf(
			"claim %s is backed by class %s and this claim by %s: a backing class's provisioner clones only its own volumes; back the clone with %s", name, c, backingClass, c)}, nil
	}
	return &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: srcBacking.Name}, nil, nil
}

// ensure is the one create-or-adopt path of every object the controller owns: it reads the
// object named like want into got, or creates want. An object found, or found in the way of a
// create, is used only if the controller made it for this volume.
func ensure[T client.Object](ctx context.Context, r *Reconciler, want, got T, vol Volume) (created bool, problem *Problem, err error) {
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(want), got)
	if err != nil && !apierrors.IsNotFound(err) {
		return false, nil, fmt.Errorf("getting %s: %w", describe(want), err)
	}
	if apierrors.IsNotFound(err) {
		createErr := r.Client.Create(ctx, want)
		if createErr == nil {
			return true, nil, nil
		}
		if !apierrors.IsAlreadyExists(createErr) {
			return false, nil, fmt.Errorf("creating %s: %w", describe(want), createErr)
		}
		// Taken meanwhile, or by an object the cache does not hold: look past the cache.
		if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
			return false, nil, fmt.Errorf("getting %s: %w", describe(want), err)
		}
	}
	return false, r.checkOurs(got, vol), nil
}

func describe(o client.Object) string {
	kind := strings.TrimPrefix(fmt.Sprintf("%T", o), "*v1.")
	if o.GetNamespace() == "" {
		return kind + " " + o.GetName()
	}
	return kind + " " + o.GetNamespace() + "/" + o.GetName()
}

// checkOurs refuses to wire a claim to an object the controller did not create for it.
func (r *Reconciler) checkOurs(obj client.Object, vol Volume) *Problem {
	if obj.GetLabels()[swv1.LabelClaimUID] == vol.uid() && obj.GetLabels()[swv1.LabelManagedBy] == swv1.ManagedByController {
		return nil
	}
	return &Problem{Reason: ReasonConflict, Fatal: true, Message: fmt.Sprintf(
		"%s exists but was not created by ShareWarden for this claim; refusing to use it (delete or rename it)", describe(obj))}
}

// protect puts the volume-protection finalizer back on an object that lost it (one made before
// it existed, or one whose finalizer was removed by hand).
func (r *Reconciler) protect(ctx context.Context, obj client.Object) error {
	if obj.GetDeletionTimestamp() != nil || controllerutil.ContainsFinalizer(obj, swv1.FinalizerVolumeProtection) {
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(obj, swv1.FinalizerVolumeProtection)
	if err := r.Client.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("protecting %s: %w", describe(obj), err)
	}
	return nil
}

// heldWarning reports an object of a live volume that someone deleted: the protection finalizer
// holds it, and it goes on working, until the claim is deleted.
func heldWarning(obj client.Object, what string) *Problem {
	if obj.GetDeletionTimestamp() == nil {
		return nil
	}
	return &Problem{Reason: ReasonObjectDeleting, Message: fmt.Sprintf(
		"%s (%s) was deleted while the volume uses it; %s keeps it, working, until the claim itself is deleted, which is how to delete the volume",
		describe(obj), what, swv1.FinalizerVolumeProtection)}
}

// ensureBackingClaim creates the backing claim, or checks the one found is ours and big enough.
func (r *Reconciler) ensureBackingClaim(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, obs *Observation) (*corev1.PersistentVolumeClaim, *Problem, error) {
	backingClass := &storagev1.StorageClass{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: vol.BackingClass}, backingClass); apierrors.IsNotFound(err) {
		backingClass = nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting backing class %s: %w", vol.BackingClass, err)
	}
	want := BackingClaim(vol)
	got := &corev1.PersistentVolumeClaim{}
	if backingClass == nil {
		// Only a new volume needs its backing class; an existing one keeps its data and serves.
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), got); apierrors.IsNotFound(err) {
			return nil, &Problem{Reason: ReasonBackingClassMissing, Message: fmt.Sprintf(
				"backing storage class %s does not exist; create it or change the claim's %s annotation", vol.BackingClass, swv1.AnnotationBackingStorageClass)}, nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("getting backing claim: %w", err)
		}
		obs.Warnings = append(obs.Warnings, Problem{Reason: ReasonBackingClassMissing, Message: fmt.Sprintf(
			"backing storage class %s does not exist; the volume keeps its data and serves, but cannot grow until the class is back", vol.BackingClass)})
	}
	created, p, err := ensure(ctx, r, want, got, vol)
	if err != nil {
		r.event(claim, corev1.EventTypeWarning, ReasonBackingClaimPending, "Provision", "cannot create backing claim: "+err.Error())
		return nil, nil, err
	}
	if p != nil {
		return nil, p, nil
	}
	if created {
		obs.made.add(ReasonBackingClaimCreated,
			fmt.Sprintf("created backing claim %s/%s (%s, class %s)", want.Namespace, want.Name, ptr.To(vol.requestedSize()).String(), vol.BackingClass))
		r.step(ctx, StepBackingClaim, client.ObjectKeyFromObject(claim))
		return want, nil, nil
	}
	if w := heldWarning(got, "it holds the volume's data"); w != nil {
		obs.Warnings = append(obs.Warnings, *w)
	} else if err := r.protect(ctx, got); err != nil {
		return nil, nil, err
	}
	// Expansion: the backing claim follows the RWX claim's request.
	size, have := vol.requestedSize(), got.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.Cmp(have) > 0 && backingClass != nil && got.DeletionTimestamp == nil {
		if !ptr.Deref(backingClass.AllowVolumeExpansion, false) {
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

// ensureService keeps the volume's Service at one ClusterIP for the volume's whole life: once
// the PV names an address, a missing Service is recreated at that address, a Service at any
// other address is replaced, and the volume is never reported Ready elsewhere.
func (r *Reconciler) ensureService(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, obs *Observation) (*corev1.Service, *Problem, error) {
	want := Service(vol)
	got := &corev1.Service{}
	created, p, err := ensure(ctx, r, want, got, vol)
	if apierrors.IsInvalid(err) && vol.ServiceIP != "" {
		r.Metrics.serviceIPConflict()
		return nil, &Problem{Reason: ReasonServiceIPTaken, Message: fmt.Sprintf(
			"cannot recreate Service %s/%s at %s, the address the PV and every mount use: %v. Free the address (find its holder with `kubectl get svc -A | grep %s`); "+
				"the volume stays unreachable until then and nothing is deleted", want.Namespace, want.Name, vol.ServiceIP, err, vol.ServiceIP)}, nil
	}
	if err != nil || p != nil {
		return nil, p, err
	}
	if created {
		obs.made.add(ReasonServiceCreated, fmt.Sprintf("created service %s/%s at %s", want.Namespace, want.Name, want.Spec.ClusterIP))
		r.step(ctx, StepService, client.ObjectKeyFromObject(claim))
		return want, nil, nil
	}
	if vol.ServiceIP != "" && got.Spec.ClusterIP != vol.ServiceIP {
		// Ours, but not where the mounts are: replace it by one at the right address.
		r.Metrics.serviceIPConflict()
		if _, err := r.deleteOurs(ctx, got, vol.uid()); err != nil {
			return nil, nil, err
		}
		return nil, &Problem{Reason: ReasonServiceIPChanged, Message: fmt.Sprintf(
			"Service %s/%s is at %s but the PV and every mount use %s; replacing it by one at %s", got.Namespace, got.Name, got.Spec.ClusterIP, vol.ServiceIP, vol.ServiceIP)}, nil
	}
	if w := heldWarning(got, "its ClusterIP is the address every mount uses"); w != nil {
		obs.Warnings = append(obs.Warnings, *w)
	} else if err := r.protect(ctx, got); err != nil {
		return nil, nil, err
	}
	return got, nil, nil
}

// ensureServer keeps exactly one server pod. The pod's fixed name makes the apiserver refuse a
// second one; a finished pod is deleted so the next pass starts a fresh one. A pod built from
// an older spec (another image or arguments) is rolled, one volume at a time (rollDecision,
// rollGate): deleted gracefully, so its agent stops ganesha and releases the lease, and made
// again on the same node, where the RWO disk is attached.
func (r *Reconciler) ensureServer(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, prev swv1.SharedVolumeStatus, obs *Observation) (*corev1.Pod, *Problem, error) {
	failingOver := obs.LeaseExpired
	if !failingOver {
		vol.PinNode = r.rolls.pin(vol.uid())
	}
	want := ServerPod(vol)
	got := &corev1.Pod{}
	created, p, err := ensure(ctx, r, want, got, vol)
	if err != nil {
		r.event(claim, corev1.EventTypeWarning, ReasonServerNotReady, "Provision", "cannot create NFS server pod: "+err.Error())
		return nil, nil, err
	}
	if p != nil {
		return nil, p, nil
	}
	if created {
		obs.made.add(ReasonServerStarting, fmt.Sprintf("starting NFS server pod %s/%s", want.Namespace, want.Name))
		r.step(ctx, StepServerPod, client.ObjectKeyFromObject(claim))
		return want, nil, nil
	}
	if got.DeletionTimestamp == nil && (got.Status.Phase == corev1.PodFailed || got.Status.Phase == corev1.PodSucceeded) {
		if err := r.Client.Delete(ctx, got, client.Preconditions{UID: &got.UID}); err != nil && !apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("deleting finished server pod: %w", err)
		}
		r.event(claim, corev1.EventTypeWarning, ReasonServerNotReady, "Provision", fmt.Sprintf("server pod %s ended (%s); starting a new one", got.Name, got.Status.Phase))
		return got, nil, nil
	}
	ready := podReady(got)
	current := got.Annotations[AnnotationServerSpecHash] == want.Annotations[AnnotationServerSpecHash]
	if current && ready && got.DeletionTimestamp == nil && r.rolls.release(vol.uid()) {
		r.event(claim, corev1.EventTypeNormal, ReasonServerRolled, "Roll", fmt.Sprintf("NFS server %s rolled: ready on node %s", got.Name, got.Spec.NodeName))
	}
	switch rollDecision(got, want.Annotations[AnnotationServerSpecHash], failingOver, r.rolls.busy(vol.uid(), r.now())) {
	case RollWait:
		log.FromContext(ctx).V(1).Info("server pod outdated; waiting for another volume's roll", "pod", got.Name)
	case RollDelete:
		if got.Spec.NodeName != "" && !r.rolls.acquire(vol.uid(), got.Spec.NodeName, r.now()) {
			break
		}
		// Graceful: the agent gets SIGTERM, stops ganesha and releases the lease.
		if err := r.Client.Delete(ctx, got, client.Preconditions{UID: &got.UID}); err != nil && !apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("deleting outdated server pod: %w", err)
		}
		r.event(claim, corev1.EventTypeNormal, ReasonServerRolling, "Roll", fmt.Sprintf(
			"NFS server %s on node %s runs an older spec; replacing it on the same node", got.Name, got.Spec.NodeName))
		return got, nil, nil
	}
	switch {
	case ready && !prev.Server.Ready:
		r.event(claim, corev1.EventTypeNormal, ReasonServerReady, "Provision", fmt.Sprintf("NFS server %s ready on node %s", got.Name, got.Spec.NodeName))
	case !ready && prev.Server.Ready:
		r.event(claim, corev1.EventTypeWarning, ReasonServerNotReady, "Serve", fmt.Sprintf("NFS server %s on node %s is not ready", got.Name, got.Spec.NodeName))
	}
	return got, nil, nil
}

// observePV reads the volume's PV, if it exists yet. The cache holds only PVs with the
// controller's labels: a CSI volume's PV, made by external-provisioner, is read from the
// apiserver once its claim names it, and labelled, so that it is cached and watched from then on.
func (r *Reconciler) observePV(ctx context.Context, vol Volume) (*corev1.PersistentVolume, *Problem, error) {
	got := &corev1.PersistentVolume{}
	key := types.NamespacedName{Name: PVName(vol.uid())}
	err := r.Client.Get(ctx, key, got)
	if apierrors.IsNotFound(err) && vol.Claim.Spec.VolumeName == key.Name {
		err = r.apiReader().Get(ctx, key, got)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("getting PV: %w", err)
	}
	if isVolumePV(got, vol.uid()) {
		if got.Labels[swv1.LabelClaimUID] != vol.uid() {
			patch := client.MergeFrom(got.DeepCopy())
			if got.Labels == nil {
				got.Labels = map[string]string{}
			}
			maps.Copy(got.Labels, vol.Labels())
			if err := r.Client.Patch(ctx, got, patch); err != nil {
				return nil, nil, fmt.Errorf("labelling PV %s: %w", got.Name, err)
			}
		}
		return got, nil, nil
	}
	if p := r.checkOurs(got, vol); p != nil {
		return nil, p, nil
	}
	return got, nil, nil
}

// isVolumePV tells whether pv is the CSI PV external-provisioner made for the claim with this
// UID: ShareWarden's driver, and the volume handle CreateVolume returned. (The controller's own
// in-tree PVs carry its labels instead.)
func isVolumePV(pv *corev1.PersistentVolume, uid string) bool {
	return pv.Spec.CSI != nil && pv.Spec.CSI.Driver == swv1.CSIDriverName && pv.Spec.CSI.VolumeHandle == PVName(uid)
}

// pvServer is the address a volume's PV tells clients to mount: the Service IP it must keep.
func pvServer(pv *corev1.PersistentVolume) string {
	switch {
	case pv.Spec.NFS != nil:
		return pv.Spec.NFS.Server
	case pv.Spec.CSI != nil:
		return pv.Spec.CSI.VolumeAttributes[csidriver.ContextServer]
	}
	return ""
}

// createPV creates the NFS PV once the server has been Ready, so that a Bound claim means a
// serving volume.
func (r *Reconciler) createPV(ctx context.Context, claim *corev1.PersistentVolumeClaim, vol Volume, obs Observation) (*corev1.PersistentVolume, *Problem, error) {
	if !podReady(obs.ServerPod) || obs.BackingClaim.Status.Phase != corev1.ClaimBound {
		return nil, nil, nil
	}
	capacity := backingCapacity(obs.BackingClaim, vol.requestedSize())
	want := PersistentVolume(vol, obs.Service.Spec.ClusterIP, capacity)
	got := &corev1.PersistentVolume{}
	created, p, err := ensure(ctx, r, want, got, vol)
	if err != nil || p != nil {
		return nil, p, err
	}
	if !created {
		return got, nil, nil
	}
	r.event(claim, corev1.EventTypeNormal, ReasonProvisioned, "Provision",
		fmt.Sprintf("provisioned NFS volume %s (%s) at %s:%s", want.Name, capacity.String(), obs.Service.Spec.ClusterIP, ExportPseudoPath))
	r.step(ctx, StepPV, client.ObjectKeyFromObject(claim))
	return want, nil, nil
}

// resizePV keeps the PV's capacity in step with the backing volume.
func (r *Reconciler) resizePV(ctx context.Context, pv *corev1.PersistentVolume, capacity resource.Quantity) error {
	if have := pv.Spec.Capacity[corev1.ResourceStorage]; capacity.Cmp(have) <= 0 {
		return nil
	}
	patch := client.MergeFrom(pv.DeepCopy())
	pv.Spec.Capacity[corev1.ResourceStorage] = capacity
	if err := r.Client.Patch(ctx, pv, patch); err != nil {
		return fmt.Errorf("resizing PV: %w", err)
	}
	return nil
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

// listConsumers lists the pods in the claim's namespace that mount the claim.
func (r *Reconciler) listConsumers(ctx context.Context, claim *corev1.PersistentVolumeClaim) ([]corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(claim.Namespace), client.MatchingFields{IndexPodClaims: claim.Name}); err != nil {
		return nil, fmt.Errorf("listing consumers: %w", err)
	}
	return pods.Items, nil
}

// countRunning counts the running consumers (status.consumerCount).
func countRunning(pods []corev1.Pod) int32 {
	var n int32
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

// blocked ends a pass that hit an error (returned for a retry with backoff) or a problem (told
// on the claim, written into the status, looked at again later).
func (r *Reconciler) blocked(ctx context.Context, claim *corev1.PersistentVolumeClaim, sv *swv1.SharedVolume, obs Observation, prev swv1.SharedVolumeStatus, err error) (ctrl.Result, error) {
	if err != nil {
		return ctrl.Result{}, err
	}
	if obs.Problem != nil && readyReason(prev) != obs.Problem.Reason {
		r.warn(claim, obs.Problem, "Provision")
	}
	return r.finish(ctx, claim, sv, obs, prev, ctrl.Result{RequeueAfter: problemRequeue})
}

// warnNew tells each warning once on the claim, when it appears, and when the managed class
// is back.
func (r *Reconciler) warnNew(claim *corev1.PersistentVolumeClaim, prev swv1.SharedVolumeStatus, warnings []Problem) {
	was := meta.FindStatusCondition(prev.Conditions, swv1.ConditionDegraded)
	for i := range warnings {
		if was == nil || was.Status != metav1.ConditionTrue || !strings.Contains(was.Reason, warnings[i].Reason) {
			r.warn(claim, &warnings[i], "Serve")
		}
	}
	if was != nil && was.Status == metav1.ConditionTrue && strings.Contains(was.Reason, ReasonManagedClassMissing) && !hasReason(warnings, ReasonManagedClassMissing) {
		r.event(claim, corev1.EventTypeNormal, ReasonManagedClassBack, "Serve", "the managed storage class is back; reconciling with it again")
	}
}

func hasReason(ps []Problem, reason string) bool {
	for _, p := range ps {
		if p.Reason == reason {
			return true
		}
	}
	return false
}

func (r *Reconciler) warn(claim *corev1.PersistentVolumeClaim, p *Problem, action string) {
	r.Metrics.problem(p.Reason)
	r.event(claim, corev1.EventTypeWarning, p.Reason, action, p.Message)
}

// finish tells new warnings on the claim (nil once it is gone) and writes the status computed
// from obs when it changed.
func (r *Reconciler) finish(ctx context.Context, claim *corev1.PersistentVolumeClaim, sv *swv1.SharedVolume, obs Observation, prev swv1.SharedVolumeStatus, res ctrl.Result) (ctrl.Result, error) {
	if claim != nil {
		r.warnNew(claim, prev, obs.Warnings)
	}
	obs.Generation = sv.Generation
	st := ComputeStatus(obs, prev, metav1.NewTime(r.now()))
	if apiequality.Semantic.DeepEqual(st, prev) {
		return res, nil
	}
	if ProgressOnly(prev, st) {
		if wait := r.holds.wait(sv.UID, r.now()); wait > 0 {
			if res.RequeueAfter == 0 || wait < res.RequeueAfter {
				res.RequeueAfter = wait
			}
			return res, nil
		}
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
	r.holds.done(sv.UID)
	return res, nil
}

// made is what one pass created. A new volume's first pass creates its backing claim, Service
// and server pod, and one Event on the claim says so instead of three: Events are apiserver
// writes like any other, and a burst of new claims makes every first pass at once. The Event's
// reason is the furthest step the pass reached (ServerStarting on a first pass that went through;
// ServiceCreated when only a lost Service was made again).
type made struct {
	reason string
	what   []string
}

func (m *made) add(reason, what string) {
	m.reason = reason
	m.what = append(m.what, what)
}

// tellMade records the Event for what one pass created, if it created anything.
func (r *Reconciler) tellMade(claim *corev1.PersistentVolumeClaim, m made) {
	if len(m.what) == 0 {
		return
	}
	r.event(claim, corev1.EventTypeNormal, m.reason, "Provision", strings.Join(m.what, "; "))
}

// event records an Event about regarding; a nil claim or PV (a volume whose claim is gone, a
// PV not made yet) records nothing.
func (r *Reconciler) event(regarding runtime.Object, typ, reason, action, msg string) {
	report.Event(r.Recorder, regarding, typ, reason, action, msg)
}

// apiReader reads past the cache (the client itself when no separate reader is set, as in
// unit tests).
func (r *Reconciler) apiReader() client.Reader {
	if r.Reader != nil {
		return r.Reader
	}
	return r.Client
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
