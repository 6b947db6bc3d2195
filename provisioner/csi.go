package provisioner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
)

// The CSI controller service is a face on the reconcile, which owns every object of a volume:
// CreateVolume waits until the reconcile has the claim's server Ready and returns where it
// serves; DeleteVolume releases the volume once its claim is confirmed gone; expansion and
// snapshots act on the backing claim. Every call is idempotent, and none makes anything the
// reconcile would not.

// Parameters external-provisioner adds with --extra-create-metadata.
const (
	ParamClaimName      = "csi.storage.k8s.io/pvc/name"
	ParamClaimNamespace = "csi.storage.k8s.io/pvc/namespace"
)

// CSIController is the CSI controller service.
type CSIController struct {
	csi.UnimplementedControllerServer
	// Reconciler is the volumes' reconcile; its cached client serves every read but the
	// confirmations that must not trust a cache.
	Reconciler *Reconciler
	// Poll is how often a waiting call looks again when no watch event woke it (default 2s).
	Poll time.Duration

	mu      sync.Mutex
	waiting map[string]chan struct{}
}

// Notify wakes the calls waiting on the volume of a claim UID; the informers of SharedVolumes
// and backing claims call it on every change (see watchForCSI).
func (c *CSIController) Notify(uid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.waiting[uid]; ok {
		close(ch)
		delete(c.waiting, uid)
	}
}

func (c *CSIController) wake(uid string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting == nil {
		c.waiting = map[string]chan struct{}{}
	}
	ch, ok := c.waiting[uid]
	if !ok {
		ch = make(chan struct{})
		c.waiting[uid] = ch
	}
	return ch
}

// wait calls check until it is done, on every change to the volume and every Poll, until ctx
// ends: then the sidecar's call times out and it calls again (DeadlineExceeded means "still
// in progress" to every sidecar).
func (c *CSIController) wait(ctx context.Context, uid string, check func() (bool, error)) error {
	poll := c.Poll
	if poll == 0 {
		poll = 2 * time.Second
	}
	t := time.NewTimer(poll)
	defer t.Stop()
	var last error
	for {
		woken := c.wake(uid)
		done, err := check()
		if done {
			return err
		}
		last = err
		select {
		case <-ctx.Done():
			msg := "not done yet"
			if last != nil {
				msg = last.Error()
			}
			return status.Errorf(codes.DeadlineExceeded, "volume %s: %s", PVName(uid), msg)
		case <-woken:
		case <-t.C:
			t.Reset(poll)
		}
	}
}

func (c *CSIController) client() client.Client { return c.Reconciler.Client }
func (c *CSIController) namespace() string     { return c.Reconciler.Config.Namespace }

// ControllerGetCapabilities lists what the controller service does.
func (c *CSIController) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// createRequest is a checked CreateVolumeRequest.
type createRequest struct {
	name     string
	claim    types.NamespacedName
	required int64
	limit    int64
}

// parseCreateVolume checks a CreateVolumeRequest: a name, mount capabilities only and a sane
// capacity range. The claim external-provisioner names with --extra-create-metadata is
// checked apart (see checkClaimParams), after the content source: a source that does not
// exist is NotFound whoever asks.
func parseCreateVolume(req *csi.CreateVolumeRequest) (createRequest, error) {
	var problems []string
	in := createRequest{
		name:     req.GetName(),
		claim:    types.NamespacedName{Namespace: req.GetParameters()[ParamClaimNamespace], Name: req.GetParameters()[ParamClaimName]},
		required: req.GetCapacityRange().GetRequiredBytes(),
		limit:    req.GetCapacityRange().GetLimitBytes(),
	}
	if in.name == "" {
		problems = append(problems, "name is empty")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		problems = append(problems, err.Error())
	}
	if in.required < 0 || in.limit < 0 || (in.limit > 0 && in.required > in.limit) {
		problems = append(problems, fmt.Sprintf("capacity_range: required_bytes %d and limit_bytes %d: want 0 <= required <= limit", in.required, in.limit))
	}
	if len(problems) > 0 {
		return in, status.Error(codes.InvalidArgument, strings.Join(problems, "; "))
	}
	return in, nil
}

// checkClaimParams checks that the request names its claim.
func checkClaimParams(in createRequest) error {
	if in.claim.Namespace == "" || in.claim.Name == "" {
		return status.Errorf(codes.InvalidArgument, "parameters %s and %s are missing: ShareWarden serves volumes for claims; run external-provisioner with --extra-create-metadata", ParamClaimNamespace, ParamClaimName)
	}
	return nil
}

// checkCapabilities accepts filesystem access in any access mode; block access cannot be
// served over NFS.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return errors.New("volume_capabilities is empty")
	}
	for _, c := range caps {
		switch {
		case c.GetBlock() != nil:
			return errors.New("block access is not supported: ShareWarden volumes are filesystems served over NFS")
		case c.GetMount() == nil:
			return errors.New("a volume capability has no access type; want mount")
		case c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN:
			return errors.New("a volume capability has no access mode")
		}
	}
	return nil
}

// checkCapacity tells whether a volume of capacity have meets a request's range; a volume of
// the same name asked again with an incompatible range AlreadyExists.
func checkCapacity(required, limit, have int64) error {
	if have < required || (limit > 0 && have > limit) {
		return status.Errorf(codes.AlreadyExists, "the volume exists with capacity %d bytes, outside the requested range [%d, %d]", have, required, limit)
	}
	return nil
}

// Servable tells whether the reconcile has a volume serving, short of its claim being bound:
// the backing claim is bound, the server Ready at the Service IP, and nothing blocks it.
func Servable(st swv1.SharedVolumeStatus) bool {
	return (st.Phase == swv1.PhaseProvisioning || st.Phase == swv1.PhaseReady) && st.ServiceIP != "" &&
		meta.IsStatusConditionTrue(st.Conditions, swv1.ConditionBackingBound) &&
		meta.IsStatusConditionTrue(st.Conditions, swv1.ConditionServerReady)
}

// volumeUID is the claim UID of a volume ID (the PV name, pvc-<claim UID>).
func volumeUID(id string) (string, bool) {
	uid, ok := strings.CutPrefix(id, "pvc-")
	return uid, ok && uid != "" && !strings.ContainsAny(uid, "/ ")
}

// CreateVolume returns the claim's volume once its server is Ready.
func (c *CSIController) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	in, err := parseCreateVolume(req)
	if err != nil {
		return nil, err
	}
	if err := c.checkContentSource(ctx, req.GetVolumeContentSource()); err != nil {
		return nil, err
	}
	if err := checkClaimParams(in); err != nil {
		return nil, err
	}
	claim := &corev1.PersistentVolumeClaim{}
	if err := c.Reconciler.apiReader().Get(ctx, in.claim, claim); apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.FailedPrecondition, "claim %s does not exist", in.claim)
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "getting claim %s: %v", in.claim, err)
	}
	uid := string(claim.UID)
	if in.name != PVName(uid) {
		return nil, status.Errorf(codes.InvalidArgument, "volume name %s is not %s, named after claim %s's UID: run external-provisioner with the default --volume-name-prefix=pvc and --volume-name-uuid-length", in.name, PVName(uid), in.claim)
	}
	var resp *csi.CreateVolumeResponse
	err = c.wait(ctx, uid, func() (bool, error) {
		sv := &swv1.SharedVolume{}
		if err := c.client().Get(ctx, in.claim, sv); apierrors.IsNotFound(err) {
			return false, errors.New("the controller has not seen the claim yet")
		} else if err != nil {
			return false, err
		}
		if sv.Spec.ClaimUID != uid {
			return false, errors.New("the controller has not seen this claim yet")
		}
		if sv.Status.Phase == swv1.PhaseFailed {
			c := meta.FindStatusCondition(sv.Status.Conditions, swv1.ConditionReady)
			msg := "provisioning failed"
			if c != nil {
				msg = c.Reason + ": " + c.Message
			}
			return true, status.Errorf(codes.FailedPrecondition, "volume %s: %s (the claim's Events say more)", in.name, msg)
		}
		if !Servable(sv.Status) {
			return false, fmt.Errorf("volume is %s", sv.Status.Phase)
		}
		backing := &corev1.PersistentVolumeClaim{}
		if err := c.client().Get(ctx, types.NamespacedName{Namespace: c.namespace(), Name: swv1.ObjectName(uid)}, backing); err != nil {
			return false, fmt.Errorf("getting backing claim: %w", err)
		}
		have := backing.Status.Capacity[corev1.ResourceStorage]
		if err := checkCapacity(in.required, in.limit, have.Value()); err != nil {
			return true, err
		}
		resp = &csi.CreateVolumeResponse{Volume: &csi.Volume{
			VolumeId:      in.name,
			CapacityBytes: have.Value(),
			VolumeContext: map[string]string{csidriver.ContextServer: sv.Status.ServiceIP, csidriver.ContextShare: ExportPseudoPath},
			ContentSource: req.GetVolumeContentSource(),
		}}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// checkContentSource answers NotFound for a clone or restore whose source is not a ShareWarden
// volume or snapshot (external-provisioner passes it from the claim's data source, which the
// reconcile maps onto the backing claim).
func (c *CSIController) checkContentSource(ctx context.Context, src *csi.VolumeContentSource) error {
	switch {
	case src == nil:
		return nil
	case src.GetVolume() != nil:
		if _, err := c.backingClaim(ctx, src.GetVolume().GetVolumeId()); err != nil {
			return status.Errorf(status.Code(err), "source %s", status.Convert(err).Message())
		}
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		if _, err := c.backingSnapshot(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// DeleteVolume releases the volume once its claim is confirmed gone, as its reclaim policy
// says (external-provisioner calls it for a Released PV whose policy is Delete).
func (c *CSIController) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is empty")
	}
	uid, ok := volumeUID(req.GetVolumeId())
	if !ok {
		return &csi.DeleteVolumeResponse{}, nil // never one of ours: nothing to delete
	}
	err := c.wait(ctx, uid, func() (bool, error) {
		done, err := c.Reconciler.ReleaseVolume(ctx, uid)
		if errors.Is(err, ErrClaimExists) {
			return true, status.Errorf(codes.FailedPrecondition, "volume %s: %v", req.GetVolumeId(), err)
		}
		return done && err == nil, err
	})
	if err != nil {
		return nil, err
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms filesystem access in any mode.
func (c *CSIController) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" || len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_id and volume_capabilities are required")
	}
	if _, err := c.backingClaim(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext: req.GetVolumeContext(), VolumeCapabilities: req.GetVolumeCapabilities(), Parameters: req.GetParameters(),
	}}, nil
}

// backingClaim is the backing claim of a volume ID, or NotFound.
func (c *CSIController) backingClaim(ctx context.Context, id string) (*corev1.PersistentVolumeClaim, error) {
	uid, ok := volumeUID(id)
	if !ok {
		return nil, status.Errorf(codes.NotFound, "volume %s is not a ShareWarden volume", id)
	}
	backing := &corev1.PersistentVolumeClaim{}
	if err := c.client().Get(ctx, types.NamespacedName{Namespace: c.namespace(), Name: swv1.ObjectName(uid)}, backing); apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", id)
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "getting volume %s: %v", id, err)
	}
	if backing.Labels[swv1.LabelClaimUID] != uid {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", id)
	}
	return backing, nil
}

// ControllerExpandVolume grows the backing claim (online: the NFS clients see the new size
// once the backing filesystem has it) and returns once it has.
func (c *CSIController) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	required := req.GetCapacityRange().GetRequiredBytes()
	if req.GetVolumeId() == "" || required <= 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_id and capacity_range.required_bytes are required")
	}
	if limit := req.GetCapacityRange().GetLimitBytes(); limit > 0 && limit < required {
		return nil, status.Errorf(codes.InvalidArgument, "capacity_range: limit_bytes %d below required_bytes %d", limit, required)
	}
	if _, err := c.backingClaim(ctx, req.GetVolumeId()); err != nil {
		return nil, err
	}
	uid, _ := volumeUID(req.GetVolumeId())
	var have int64
	err := c.wait(ctx, uid, func() (bool, error) {
		backing, err := c.backingClaim(ctx, req.GetVolumeId())
		if err != nil {
			return true, err
		}
		capacity := backing.Status.Capacity[corev1.ResourceStorage]
		if have = capacity.Value(); have >= required {
			return true, nil
		}
		err = c.growBacking(ctx, backing, required)
		// A class that cannot expand is a refusal, not progress: waiting would not change it.
		return status.Code(err) == codes.FailedPrecondition, err
	})
	if err != nil {
		return nil, err
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: have, NodeExpansionRequired: false}, nil
}

// growBacking raises the backing claim's request to required bytes, if its class allows.
func (c *CSIController) growBacking(ctx context.Context, backing *corev1.PersistentVolumeClaim, required int64) error {
	want := *resource.NewQuantity(required, resource.BinarySI)
	if have := backing.Spec.Resources.Requests[corev1.ResourceStorage]; have.Cmp(want) >= 0 {
		return fmt.Errorf("backing claim %s/%s is being resized to %s", backing.Namespace, backing.Name, have.String())
	}
	class := &storagev1.StorageClass{}
	name := ptr.Deref(backing.Spec.StorageClassName, "")
	if err := c.client().Get(ctx, types.NamespacedName{Name: name}, class); err != nil {
		return fmt.Errorf("getting backing class %s: %w", name, err)
	}
	if !ptr.Deref(class.AllowVolumeExpansion, false) {
		return status.Errorf(codes.FailedPrecondition, "backing class %s does not allow volume expansion", name)
	}
	patch := client.MergeFrom(backing.DeepCopy())
	backing.Spec.Resources.Requests[corev1.ResourceStorage] = want
	if err := c.client().Patch(ctx, backing, patch); err != nil {
		return fmt.Errorf("resizing backing claim: %w", err)
	}
	return fmt.Errorf("backing claim %s/%s is being resized to %s", backing.Namespace, backing.Name, want.String())
}

// backingSnapshot is the backing VolumeSnapshot of a snapshot ID, or NotFound.
func (c *CSIController) backingSnapshot(ctx context.Context, id string) (*snapshotv1.VolumeSnapshot, error) {
	if id == "" || strings.ContainsAny(id, "/ ") {
		return nil, status.Errorf(codes.NotFound, "snapshot %q does not exist", id)
	}
	vs := &snapshotv1.VolumeSnapshot{}
	if err := c.Reconciler.apiReader().Get(ctx, types.NamespacedName{Namespace: c.namespace(), Name: id}, vs); apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil, status.Errorf(codes.NotFound, "snapshot %s does not exist", id)
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "getting snapshot %s: %v", id, err)
	}
	if !IsBackingSnapshot(vs) {
		return nil, status.Errorf(codes.NotFound, "snapshot %s does not exist (a VolumeSnapshot of that name in %s was not made by ShareWarden)", id, c.namespace())
	}
	return vs, nil
}

// CreateSnapshot snapshots the backing claim with a VolumeSnapshot of the backing driver, and
// reports it ready when that is (csi-snapshotter calls again until then).
func (c *CSIController) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" || req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "name and source_volume_id are required")
	}
	name, source := backingSnapshotName(req.GetName()), req.GetSourceVolumeId()
	backing, err := c.backingClaim(ctx, source)
	if err != nil {
		return nil, err
	}
	vs := &snapshotv1.VolumeSnapshot{}
	err = c.Reconciler.apiReader().Get(ctx, types.NamespacedName{Namespace: c.namespace(), Name: name}, vs)
	switch {
	case apierrors.IsNotFound(err):
		if vs, err = c.newBackingSnapshot(ctx, name, backing, req.GetParameters()); err != nil {
			return nil, err
		}
	case meta.IsNoMatchError(err):
		return nil, status.Error(codes.FailedPrecondition, "the VolumeSnapshot CRDs are not installed")
	case err != nil:
		return nil, status.Errorf(codes.Unavailable, "getting snapshot %s: %v", name, err)
	case !IsBackingSnapshot(vs) || vs.Labels[swv1.LabelClaimUID] != backing.Labels[swv1.LabelClaimUID]:
		return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists, of another volume", name)
	}
	return &csi.CreateSnapshotResponse{Snapshot: snapshotOf(vs, source, backing)}, nil
}

// newBackingSnapshot creates the backing snapshot, with the backing driver's snapshot class.
func (c *CSIController) newBackingSnapshot(ctx context.Context, name string, backing *corev1.PersistentVolumeClaim, params map[string]string) (*snapshotv1.VolumeSnapshot, error) {
	backingClass := ptr.Deref(backing.Spec.StorageClassName, "")
	named := params[swv1.ParameterSnapshotClass]
	if named == "" {
		if key, ok := claimKeyFromLabels(backing); ok {
			sv := &swv1.SharedVolume{}
			if err := c.client().Get(ctx, key, sv); err == nil && sv.Status.StorageClass != nil {
				named = sv.Status.StorageClass.Parameters[swv1.ParameterSnapshotClass]
			}
		}
	}
	class := &storagev1.StorageClass{}
	if err := c.client().Get(ctx, types.NamespacedName{Name: backingClass}, class); err != nil {
		return nil, status.Errorf(codes.Unavailable, "getting backing class %s: %v", backingClass, err)
	}
	classes := &snapshotv1.VolumeSnapshotClassList{}
	if err := c.Reconciler.apiReader().List(ctx, classes); meta.IsNoMatchError(err) {
		return nil, status.Error(codes.FailedPrecondition, "the VolumeSnapshot CRDs are not installed")
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "listing VolumeSnapshotClasses: %v", err)
	}
	snapClass, err := PickSnapshotClass(classes.Items, class.Provisioner, named, backingClass)
	if err != nil {
		c.Reconciler.warnClaimOf(backing, ReasonCannotSnapshot, "Snapshot", err.Error())
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	vs := BackingSnapshot(name, backing, snapClass)
	err = c.client().Create(ctx, vs)
	if apierrors.IsAlreadyExists(err) {
		// Made meanwhile, by a retry of this call: use it only if it is this volume's.
		if err := c.Reconciler.apiReader().Get(ctx, client.ObjectKeyFromObject(vs), vs); err != nil {
			return nil, status.Errorf(codes.Unavailable, "getting snapshot %s: %v", name, err)
		}
		if !IsBackingSnapshot(vs) || vs.Labels[swv1.LabelClaimUID] != backing.Labels[swv1.LabelClaimUID] {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists, of another volume", name)
		}
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "creating backing snapshot: %v", err)
	}
	return vs, nil
}

// snapshotOf reports a backing snapshot as the CSI snapshot it stands for.
func snapshotOf(vs *snapshotv1.VolumeSnapshot, source string, backing *corev1.PersistentVolumeClaim) *csi.Snapshot {
	snap := &csi.Snapshot{SnapshotId: vs.Name, SourceVolumeId: source, CreationTime: timestamppb.New(vs.CreationTimestamp.Time)}
	if vs.CreationTimestamp.IsZero() {
		snap.CreationTime = timestamppb.Now()
	}
	size := backing.Status.Capacity[corev1.ResourceStorage]
	if st := vs.Status; st != nil {
		snap.ReadyToUse = ptr.Deref(st.ReadyToUse, false)
		if st.CreationTime != nil {
			snap.CreationTime = timestamppb.New(st.CreationTime.Time)
		}
		if st.RestoreSize != nil {
			size = *st.RestoreSize
		}
	}
	snap.SizeBytes = size.Value()
	return snap
}

// DeleteSnapshot deletes the backing snapshot.
func (c *CSIController) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is empty")
	}
	vs, err := c.backingSnapshot(ctx, req.GetSnapshotId())
	if status.Code(err) == codes.NotFound {
		return &csi.DeleteSnapshotResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	if err := c.client().Delete(ctx, vs, client.Preconditions{UID: ptr.To(vs.UID)}); err != nil && !apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.Unavailable, "deleting backing snapshot %s: %v", vs.Name, err)
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// warnClaimOf puts a Warning Event on the RWX claim a backing object serves.
func (r *Reconciler) warnClaimOf(backing client.Object, reason, action, msg string) {
	key, ok := claimKeyFromLabels(backing)
	if !ok {
		return
	}
	claim := &corev1.PersistentVolumeClaim{}
	claim.Namespace, claim.Name, claim.UID = key.Namespace, key.Name, types.UID(backing.GetLabels()[swv1.LabelClaimUID])
	r.event(claim, corev1.EventTypeWarning, reason, action, msg)
}

// ServeCSI serves the CSI identity and controller services on endpoint while mgr runs, in every
// replica (the sidecars elect their own leader, and every call is idempotent), and wakes
// waiting calls on every change to a SharedVolume or backing claim.
func (r *Reconciler) ServeCSI(ctx context.Context, mgr ctrl.Manager, endpoint string) error {
	c := &CSIController{Reconciler: r}
	for _, obj := range []client.Object{&swv1.SharedVolume{}, &corev1.PersistentVolumeClaim{}} {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T for CSI calls: %w", obj, err)
		}
		notify := func(o any) {
			switch o := o.(type) {
			case *swv1.SharedVolume:
				c.Notify(o.Spec.ClaimUID)
			case client.Object:
				if uid := o.GetLabels()[swv1.LabelClaimUID]; uid != "" {
					c.Notify(uid)
				}
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    notify,
			UpdateFunc: func(_, o any) { notify(o) },
			DeleteFunc: func(o any) {
				if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = d.Obj
				}
				notify(o)
			},
		}); err != nil {
			return fmt.Errorf("watching %T for CSI calls: %w", obj, err)
		}
	}
	identity := &csidriver.IdentityServer{Controller: true, Ready: func() bool {
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		return mgr.GetCache().WaitForCacheSync(ctx)
	}}
	if err := mgr.Add(csiRunnable(func(ctx context.Context) error {
		return csidriver.Serve(ctx, endpoint, identity, c, nil)
	})); err != nil {
		return fmt.Errorf("adding the CSI server: %w", err)
	}
	return nil
}

// csiRunnable runs in every replica, leader or not.
type csiRunnable func(context.Context) error

func (f csiRunnable) Start(ctx context.Context) error { return f(ctx) }
func (csiRunnable) NeedLeaderElection() bool          { return false }
