package csi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"
	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	mount "k8s.io/mount-utils"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/csidisk"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// TestSanity runs csi-sanity against ShareWarden's controller service, the one the
// controller serves on the plane, through a shim that plays Kubernetes' part for each volume
// csi-sanity asks for (see sanityShim), and against the real node service on a fake mounter
// (the kernel NFS mount cannot run here). One socket serves both, as csi-sanity expects.
func TestSanity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := fixture.Namespace(t, ctx, plane, "sanity")
	conn, err := csidisk.Dial(strings.TrimPrefix(csiEnv.ControllerEndpoint(), "unix://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	shim := &sanityShim{
		ctl: csi.NewControllerClient(conn), c: c, ns: ns,
		claims: map[string]types.NamespacedName{}, snapshots: map[string]bool{},
	}
	defer shim.cleanup(t)

	dir := t.TempDir()
	endpoint := "unix://" + filepath.Join(dir, "sanity.sock")
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- csidriver.Serve(sctx, endpoint, &forwardIdentity{c: csi.NewIdentityClient(conn)}, shim,
			&csidriver.NodeServer{NodeID: "sanity-node", Mounter: mount.NewFakeMounter(nil)})
	}()
	defer func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()

	cfg := sanity.NewTestConfig()
	cfg.Address = endpoint
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.TestVolumeSize = 64 << 20
	cfg.TestVolumeExpandSize = 128 << 20
	// IdempotentCount stays at its default, 10: only NodePublishVolume repeats, on one volume.
	sanity.Test(t, cfg)
	if err := csiEnv.Check(); err != nil {
		t.Error(err)
	}
}

// sanityCallTimeout bounds each call the shim forwards: csi-sanity calls without a deadline,
// and a volume's server may take a while to come up on a busy machine.
const sanityCallTimeout = 3 * time.Minute

// forwardIdentity forwards the identity service to the controller's.
type forwardIdentity struct {
	csi.UnimplementedIdentityServer
	c csi.IdentityClient
}

func (f *forwardIdentity) GetPluginInfo(ctx context.Context, req *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return f.c.GetPluginInfo(ctx, req)
}

func (f *forwardIdentity) GetPluginCapabilities(ctx context.Context, req *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return f.c.GetPluginCapabilities(ctx, req)
}

func (f *forwardIdentity) Probe(ctx context.Context, req *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return f.c.Probe(ctx, req)
}

// sanityShim stands between csi-sanity and ShareWarden's controller service, which serves
// volumes for claims only. For a volume csi-sanity creates, it does what the apiserver and
// external-provisioner do for a user's claim: the claim (with a data source for a clone or a
// restore), and CreateVolume called with the claim's name and metadata. Deleting the volume
// deletes the claim first, as a user does. Every answer is the real service's.
type sanityShim struct {
	csi.UnimplementedControllerServer
	ctl csi.ControllerClient
	c   client.Client
	ns  string

	mu sync.Mutex
	// claims maps each volume ID the shim's claims have (pvc-<claim UID>) to its claim.
	claims map[string]types.NamespacedName
	// snapshots holds the snapshot IDs CreateSnapshot returned and DeleteSnapshot did not
	// delete yet: the snapshots an admin could import.
	snapshots map[string]bool
}

// sanityName is a Kubernetes object name for a CSI name of any length and alphabet.
func sanityName(kind, name string) string {
	sum := sha256.Sum256([]byte(name))
	return "sanity-" + kind + "-" + hex.EncodeToString(sum[:8])
}

// validCreate tells whether the real service has a request to answer for a claim: one without
// a name or valid capabilities it must refuse as it is.
func validCreate(req *csi.CreateVolumeRequest) bool {
	if req.GetName() == "" || len(req.GetVolumeCapabilities()) == 0 {
		return false
	}
	for _, c := range req.GetVolumeCapabilities() {
		if c.GetAccessMode() == nil || (c.GetMount() == nil && c.GetBlock() == nil) {
			return false
		}
	}
	return true
}

// CreateVolume gets or creates the claim a user would have made for this volume and calls
// CreateVolume as external-provisioner does for it.
func (s *sanityShim) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, sanityCallTimeout)
	defer cancel()
	if !validCreate(req) {
		return s.ctl.CreateVolume(ctx, req)
	}
	// The user's claim: a data source when the volume is a clone or a restore.
	var source *corev1.TypedLocalObjectReference
	switch {
	case req.GetVolumeContentSource().GetVolume() != nil:
		s.mu.Lock()
		key, ok := s.claims[req.GetVolumeContentSource().GetVolume().GetVolumeId()]
		s.mu.Unlock()
		if !ok {
			return s.ctl.CreateVolume(ctx, req) // no claim to clone: the real service says NotFound
		}
		source = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: key.Name}
	case req.GetVolumeContentSource().GetSnapshot() != nil:
		id := req.GetVolumeContentSource().GetSnapshot().GetSnapshotId()
		s.mu.Lock()
		known := s.snapshots[id]
		s.mu.Unlock()
		if !known {
			return s.ctl.CreateVolume(ctx, req) // nothing to import: the real service says NotFound
		}
		vs, err := s.importSnapshot(ctx, id)
		if err != nil {
			return nil, err
		}
		source = &corev1.TypedLocalObjectReference{APIGroup: ptr.To(snapshotv1.GroupName), Kind: "VolumeSnapshot", Name: vs}
	}
	claim, err := s.claim(ctx, req, source)
	if err != nil {
		return nil, err
	}
	// external-provisioner: the volume named after the claim's UID, and the claim's name and
	// namespace in the parameters (--extra-create-metadata).
	fwd := proto.Clone(req).(*csi.CreateVolumeRequest)
	fwd.Name = provisioner.PVName(string(claim.UID))
	if fwd.Parameters == nil {
		fwd.Parameters = map[string]string{}
	}
	fwd.Parameters[provisioner.ParamClaimName] = claim.Name
	fwd.Parameters[provisioner.ParamClaimNamespace] = claim.Namespace
	return s.ctl.CreateVolume(ctx, fwd)
}

// claim gets or creates the user's RWX claim of the volume (the apiserver's part).
func (s *sanityShim) claim(ctx context.Context, req *csi.CreateVolumeRequest, source *corev1.TypedLocalObjectReference) (*corev1.PersistentVolumeClaim, error) {
	size := req.GetCapacityRange().GetRequiredBytes()
	if size <= 0 {
		size = 64 << 20
	}
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	claim := fixture.Claim(s.ns, sanityName("vol", req.GetName()), fixture.OnClass(fixture.CSIManagedClass), fixture.Size(resource.NewQuantity(size, resource.BinarySI).String()),
		func(p *corev1.PersistentVolumeClaim) { p.Spec.DataSource = source })
	if err := s.c.Create(ctx, claim); apierrors.IsAlreadyExists(err) {
		if err := s.c.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
			return nil, status.Errorf(codes.Unavailable, "getting claim %s: %v", claim.Name, err)
		}
	} else if err != nil {
		return nil, status.Errorf(codes.Unavailable, "creating claim %s: %v", claim.Name, err)
	}
	s.mu.Lock()
	s.claims[provisioner.PVName(string(claim.UID))] = client.ObjectKeyFromObject(claim)
	s.mu.Unlock()
	return claim, nil
}

// importSnapshot gets or creates a VolumeSnapshot of ShareWarden's driver for a snapshot ID,
// bound to a pre-provisioned VolumeSnapshotContent, as an admin importing a snapshot does;
// snapshot-controller binds the two and csi-snapshotter checks the content. It returns the
// VolumeSnapshot's name once it is ready to use, when a user restoring it would go on (and
// external-provisioner would not turn the restore away).
func (s *sanityShim) importSnapshot(ctx context.Context, id string) (string, error) {
	name := sanityName("snap", id)
	content := &snapshotv1.VolumeSnapshotContent{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: snapshotv1.VolumeSnapshotContentSpec{
			// Retain: the snapshot is csi-sanity's, which deletes it with DeleteSnapshot.
			DeletionPolicy:          snapshotv1.VolumeSnapshotContentRetain,
			Driver:                  swv1.CSIDriverName,
			Source:                  snapshotv1.VolumeSnapshotContentSource{SnapshotHandle: ptr.To(id)},
			VolumeSnapshotClassName: ptr.To(fixture.CSISnapshotClass),
			VolumeSnapshotRef:       corev1.ObjectReference{Namespace: s.ns, Name: name},
		},
	}
	vs := &snapshotv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: name},
		Spec: snapshotv1.VolumeSnapshotSpec{
			Source:                  snapshotv1.VolumeSnapshotSource{VolumeSnapshotContentName: ptr.To(name)},
			VolumeSnapshotClassName: ptr.To(fixture.CSISnapshotClass),
		},
	}
	for _, o := range []client.Object{content, vs} {
		if err := s.c.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", status.Errorf(codes.Unavailable, "importing snapshot %s: %v", id, err)
		}
	}
	for {
		got := &snapshotv1.VolumeSnapshot{}
		err := s.c.Get(ctx, client.ObjectKeyFromObject(vs), got)
		if err == nil && got.Status != nil && ptr.Deref(got.Status.ReadyToUse, false) {
			return name, nil
		}
		select {
		case <-ctx.Done():
			return "", status.Errorf(codes.DeadlineExceeded, "imported snapshot %s not ready to use: %v, status %+v", name, err, got.Status)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// DeleteVolume deletes the volume's claim, as its user would, and waits until the apiserver
// has it gone; then it calls DeleteVolume as external-provisioner does for the Released PV.
func (s *sanityShim) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, sanityCallTimeout)
	defer cancel()
	s.mu.Lock()
	key, ok := s.claims[req.GetVolumeId()]
	s.mu.Unlock()
	if ok {
		if err := s.deleteClaim(ctx, key, strings.TrimPrefix(req.GetVolumeId(), "pvc-")); err != nil {
			return nil, err
		}
	}
	resp, err := s.ctl.DeleteVolume(ctx, req)
	if err == nil && ok {
		s.mu.Lock()
		delete(s.claims, req.GetVolumeId())
		s.mu.Unlock()
	}
	return resp, err
}

func (s *sanityShim) deleteClaim(ctx context.Context, key types.NamespacedName, uid string) error {
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := s.c.Delete(ctx, claim, client.Preconditions{UID: ptr.To(types.UID(uid))}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return status.Errorf(codes.Unavailable, "deleting claim %s: %v", key, err)
	}
	for {
		err := s.c.Get(ctx, key, claim)
		if apierrors.IsNotFound(err) || (err == nil && string(claim.UID) != uid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "claim %s not gone: %v, finalizers %v", key, err, claim.Finalizers)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ControllerExpandVolume raises the claim's request, as its user would (the apiserver takes
// that only of a bound claim), so that the reconcile and both resizers agree, and calls
// ControllerExpandVolume as external-resizer does.
func (s *sanityShim) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, sanityCallTimeout)
	defer cancel()
	s.mu.Lock()
	key, ok := s.claims[req.GetVolumeId()]
	s.mu.Unlock()
	if want := req.GetCapacityRange().GetRequiredBytes(); ok && want > 0 {
		if err := s.growClaim(ctx, key, want); err != nil {
			return nil, err
		}
	}
	return s.ctl.ControllerExpandVolume(ctx, req)
}

func (s *sanityShim) growClaim(ctx context.Context, key types.NamespacedName, size int64) error {
	want := *resource.NewQuantity(size, resource.BinarySI)
	for {
		claim := &corev1.PersistentVolumeClaim{}
		err := s.c.Get(ctx, key, claim)
		if err == nil && claim.Status.Phase == corev1.ClaimBound {
			if have := claim.Spec.Resources.Requests[corev1.ResourceStorage]; have.Cmp(want) >= 0 {
				return nil
			}
			patch := client.MergeFrom(claim.DeepCopy())
			claim.Spec.Resources.Requests[corev1.ResourceStorage] = want
			if err = s.c.Patch(ctx, claim, patch); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "raising claim %s's request to %s: %v (phase %s)", key, want.String(), err, claim.Status.Phase)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// CreateSnapshot and DeleteSnapshot are forwarded; the shim notes which snapshots exist, as
// an admin importing one would know.
func (s *sanityShim) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	resp, err := s.ctl.CreateSnapshot(ctx, req)
	if err == nil && resp.GetSnapshot().GetSnapshotId() != "" {
		s.mu.Lock()
		s.snapshots[resp.GetSnapshot().GetSnapshotId()] = true
		s.mu.Unlock()
	}
	return resp, err
}

func (s *sanityShim) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	resp, err := s.ctl.DeleteSnapshot(ctx, req)
	if err == nil {
		s.mu.Lock()
		delete(s.snapshots, req.GetSnapshotId())
		s.mu.Unlock()
	}
	return resp, err
}

// The rest is forwarded unchanged.

func (s *sanityShim) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	return s.ctl.ControllerPublishVolume(ctx, req)
}

func (s *sanityShim) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	return s.ctl.ControllerUnpublishVolume(ctx, req)
}

func (s *sanityShim) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	return s.ctl.ValidateVolumeCapabilities(ctx, req)
}

func (s *sanityShim) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	return s.ctl.ListVolumes(ctx, req)
}

func (s *sanityShim) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	return s.ctl.ControllerListVolumeHealth(ctx, req)
}

func (s *sanityShim) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	return s.ctl.ControllerGetVolumeHealth(ctx, req)
}

func (s *sanityShim) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	return s.ctl.GetCapacity(ctx, req)
}

func (s *sanityShim) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return s.ctl.ControllerGetCapabilities(ctx, req)
}

func (s *sanityShim) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	return s.ctl.ListSnapshots(ctx, req)
}

func (s *sanityShim) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	return s.ctl.GetSnapshot(ctx, req)
}

func (s *sanityShim) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	return s.ctl.ControllerGetVolume(ctx, req)
}

func (s *sanityShim) ControllerModifyVolume(ctx context.Context, req *csi.ControllerModifyVolumeRequest) (*csi.ControllerModifyVolumeResponse, error) {
	return s.ctl.ControllerModifyVolume(ctx, req)
}

// cleanup deletes what the shim made that csi-sanity's own cleanup left: the imported
// snapshots (their contents are Retain, so the snapshot data is not touched), and the claims
// of volumes a failed case did not delete.
func (s *sanityShim) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var errs []error
	vss := &snapshotv1.VolumeSnapshotList{}
	errs = append(errs, s.c.List(ctx, vss, client.InNamespace(s.ns)))
	for i := range vss.Items {
		errs = append(errs, client.IgnoreNotFound(s.c.Delete(ctx, &vss.Items[i])))
	}
	contents := &snapshotv1.VolumeSnapshotContentList{}
	errs = append(errs, s.c.List(ctx, contents))
	for i := range contents.Items {
		if c := &contents.Items[i]; c.Spec.VolumeSnapshotRef.Namespace == s.ns {
			errs = append(errs, client.IgnoreNotFound(s.c.Delete(ctx, c)))
		}
	}
	s.mu.Lock()
	left := maps.Clone(s.claims)
	s.mu.Unlock()
	for id, key := range left {
		if _, err := s.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s (claim %s): %w", id, key, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("cleaning up after csi-sanity: %v", err)
	}
}
