package csidisk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sharewarden/sharewarden/test/loopdisk"
)

// Controller is the CSI controller service: it creates, deletes, attaches (records the node a
// disk is attached to), grows and snapshots disks.
type Controller struct {
	csi.UnimplementedControllerServer
	store       store
	defaultSize int64
	growOnStage bool
}

// NewController returns the controller service over cfg.Dir, creating the directory.
func NewController(cfg Config) (*Controller, error) {
	s, err := newStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	def := cfg.DefaultSize
	if def == 0 {
		def = defaultSize
	}
	return &Controller{store: s, defaultSize: def, growOnStage: cfg.GrowOnStage}, nil
}

func (c *Controller) register(srv *grpc.Server) { csi.RegisterControllerServer(srv, c) }

// controllerCapabilities are exactly the controller RPCs implemented here.
var controllerCapabilities = []csi.ControllerServiceCapability_RPC_Type{
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
	csi.ControllerServiceCapability_RPC_PUBLISH_READONLY,
	csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
	csi.ControllerServiceCapability_RPC_GET_CAPACITY,
	csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
	csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
}

func (c *Controller) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	resp := &csi.ControllerGetCapabilitiesResponse{}
	for _, t := range controllerCapabilities {
		resp.Capabilities = append(resp.Capabilities, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return resp, nil
}

// CreateVolume makes a disk: a sparse ext4 image, or a copy of a snapshot's or a volume's
// image (grown to the requested size; the node grows the filesystem when it stages it). The
// same name asked again returns the same volume, or AlreadyExists if the request differs.
func (c *Controller) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	p, err := createParams(req)
	if err != nil {
		return nil, err
	}
	var v *volume
	err = c.store.update(func(st *state) error {
		id := nameID(volumePrefix, p.name)
		if old := st.Volumes[id]; old != nil {
			if err := compatible(old, p); err != nil {
				return err
			}
			v = old
			return nil
		}
		var err error
		v, err = c.createVolume(ctx, st, id, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &csi.CreateVolumeResponse{Volume: csiVolume(v)}, nil
}

// createVolume writes the image of a new volume id and adds it to st.
func (c *Controller) createVolume(ctx context.Context, st *state, id string, p create) (*volume, error) {
	v := &volume{ID: id, Name: p.name, SourceSnapshot: p.sourceSnapshot, SourceVolume: p.sourceVolume}
	image := c.store.volumeImage(id)
	// Leftovers of an attempt that crashed before recording the volume.
	for _, f := range []string{image, image + ".tmp"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("removing a stale image: %w", err)
		}
	}
	var src string // image to copy, "" for a new filesystem
	var srcSize int64
	switch {
	case p.sourceSnapshot != "":
		s := st.Snapshots[p.sourceSnapshot]
		if s == nil {
			return nil, status.Errorf(codes.NotFound, "source snapshot %q does not exist", p.sourceSnapshot)
		}
		src, srcSize = c.store.snapshotImage(s.ID), s.Size
	case p.sourceVolume != "":
		sv := st.Volumes[p.sourceVolume]
		if sv == nil {
			return nil, status.Errorf(codes.NotFound, "source volume %q does not exist", p.sourceVolume)
		}
		src, srcSize = c.store.volumeImage(sv.ID), sv.Size
	}
	def := c.defaultSize
	if src != "" {
		def = srcSize // a copy is as large as its source unless asked for more
	}
	size, err := volumeSize(p.r, def)
	if err != nil {
		return nil, err
	}
	if size < srcSize {
		return nil, status.Errorf(codes.OutOfRange, "capacity_range %d..%d: the source is %d bytes, and a volume cannot be smaller than its source",
			p.r.GetRequiredBytes(), p.r.GetLimitBytes(), srcSize)
	}
	v.Size = size
	switch {
	case p.sourceVolume != "":
		err = withFrozen(st.Volumes[p.sourceVolume], func() error { return copyImage(image, src, size) })
	case src != "":
		err = copyImage(image, src, size)
	default:
		err = loopdisk.Create(ctx, image+".tmp", size)
		if err == nil {
			err = os.Rename(image+".tmp", image)
		}
		if err != nil {
			_ = os.Remove(image + ".tmp")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating volume %q: %w", p.name, err)
	}
	st.Volumes[id] = v
	return v, nil
}

// withFrozen runs do (a copy of v's image) with v's filesystem frozen if it is mounted
// read-write (see freeze), so that the image copied is consistent.
func withFrozen(v *volume, do func() error) error {
	if v.Staged == nil || v.Staged.ReadOnly || !loopdisk.Mounted(v.Staged.Path) {
		return do()
	}
	thaw, err := freeze(v.Staged.Path)
	if err != nil {
		return err
	}
	err = do()
	if terr := thaw(); err == nil {
		err = terr
	}
	return err
}

func csiVolume(v *volume) *csi.Volume {
	cv := &csi.Volume{VolumeId: v.ID, CapacityBytes: v.Size}
	switch {
	case v.SourceSnapshot != "":
		cv.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceSnapshot}}}
	case v.SourceVolume != "":
		cv.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceVolume}}}
	}
	return cv
}

// DeleteVolume removes a disk and its image; a volume already gone is fine. A disk still
// attached or mounted is not deleted (FailedPrecondition), as the spec allows: detach it first.
func (c *Controller) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	err := c.store.update(func(st *state) error {
		v := st.Volumes[id]
		if v == nil {
			return nil
		}
		if v.AttachedTo != "" {
			return status.Errorf(codes.FailedPrecondition, "volume %s is attached to node %s: unpublish it (delete its VolumeAttachment) first", id, v.AttachedTo)
		}
		if v.Staged != nil {
			return status.Errorf(codes.FailedPrecondition, "volume %s is still mounted on node %s at %s: unstage it first", id, v.Staged.Node, v.Staged.Path)
		}
		if err := os.Remove(c.store.volumeImage(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the image of volume %s: %w", id, err)
		}
		delete(st.Volumes, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.DeleteVolumeResponse{}, nil
}

// ControllerPublishVolume attaches a disk to a node: it records the attachment, which the
// node's NodeStageVolume requires. Like a cloud disk, a volume attached to one node cannot be
// attached to another (FailedPrecondition) until it is unpublished from the first.
func (c *Controller) ControllerPublishVolume(_ context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	id, node := req.GetVolumeId(), req.GetNodeId()
	switch {
	case id == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case node == "":
		return nil, status.Error(codes.InvalidArgument, "node_id is required")
	case req.GetVolumeCapability() == nil:
		return nil, status.Error(codes.InvalidArgument, "volume_capability is required")
	}
	if p := checkCapability(req.GetVolumeCapability()); p != "" {
		return nil, status.Error(codes.InvalidArgument, p)
	}
	err := c.store.update(func(st *state) error {
		v := st.Volumes[id]
		if v == nil {
			return status.Errorf(codes.NotFound, "volume %s does not exist", id)
		}
		n, ok := st.Nodes[node]
		if !ok {
			return status.Errorf(codes.NotFound, "node %s is unknown: no %s node service was started for it", node, DriverName)
		}
		switch {
		case v.AttachedTo == node && v.AttachedReadOnly == req.GetReadonly():
			return nil
		case v.AttachedTo == node:
			return status.Errorf(codes.AlreadyExists, "volume %s is attached to node %s with readonly=%t", id, node, v.AttachedReadOnly)
		case v.AttachedTo != "":
			return status.Errorf(codes.FailedPrecondition, "volume %s is attached to node %s: a disk is attached to one node at a time; unpublish it from %s first", id, v.AttachedTo, v.AttachedTo)
		case n.MaxVolumes > 0 && st.attachedCount(node) >= n.MaxVolumes:
			return status.Errorf(codes.ResourceExhausted, "node %s has its maximum of %d volumes attached", node, n.MaxVolumes)
		}
		v.AttachedTo, v.AttachedReadOnly = node, req.GetReadonly()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.ControllerPublishVolumeResponse{}, nil
}

// ControllerUnpublishVolume detaches a disk from a node (from any node when node_id is empty);
// a volume or attachment already gone is fine. Like a cloud's force-detach, it succeeds even if
// the node still has the disk mounted; the next node's NodeStageVolume then waits for that
// node to unstage it, so the image is never mounted twice.
func (c *Controller) ControllerUnpublishVolume(_ context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	id, node := req.GetVolumeId(), req.GetNodeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	err := c.store.update(func(st *state) error {
		if v := st.Volumes[id]; v != nil && (node == "" || v.AttachedTo == node) {
			v.AttachedTo, v.AttachedReadOnly = "", false
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms single-node-writer ext4 mounts only.
func (c *Controller) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_capabilities is empty")
	}
	err := c.store.view(func(st *state) error {
		if st.Volumes[id] == nil {
			return status.Errorf(codes.NotFound, "volume %s does not exist", id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, vc := range req.GetVolumeCapabilities() {
		if p := checkCapability(vc); p != "" {
			return &csi.ValidateVolumeCapabilitiesResponse{Message: p}, nil
		}
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// ListVolumes lists the disks in ID order, paginated (see page).
func (c *Controller) ListVolumes(_ context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	resp := &csi.ListVolumesResponse{}
	err := c.store.view(func(st *state) error {
		ids := sortedKeys(st.Volumes)
		p, next, err := page(ids, req.GetStartingToken(), req.GetMaxEntries(), volumePrefix)
		if err != nil {
			return err
		}
		for _, id := range p {
			resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{Volume: csiVolume(st.Volumes[id])})
		}
		resp.NextToken = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// GetCapacity is the free space of the directory the images are in. The images are sparse, so
// this bounds what can be written rather than what can be created.
func (c *Controller) GetCapacity(context.Context, *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(c.store.dir, &sfs); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", c.store.dir, err)
	}
	free := int64(sfs.Bavail) * sfs.Bsize
	return &csi.GetCapacityResponse{AvailableCapacity: free,
		MaximumVolumeSize: wrapperspb.Int64(min(free, maxSize)),
		MinimumVolumeSize: wrapperspb.Int64(minSize)}, nil
}

// ControllerExpandVolume grows a disk's image (also while it is attached and mounted); the
// node then grows the filesystem (NodeExpandVolume), so node expansion is required, unless
// GrowOnStage defers it to the next NodeStageVolume.
func (c *Controller) ControllerExpandVolume(_ context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if req.GetVolumeCapability() != nil {
		if p := checkCapability(req.GetVolumeCapability()); p != "" {
			return nil, status.Error(codes.InvalidArgument, p)
		}
	}
	var size int64
	err := c.store.update(func(st *state) error {
		v := st.Volumes[id]
		if v == nil {
			return status.Errorf(codes.NotFound, "volume %s does not exist", id)
		}
		var err error
		if size, err = expandSize(req.GetCapacityRange(), v.Size); err != nil {
			return err
		}
		if size == v.Size {
			return nil
		}
		if err := os.Truncate(c.store.volumeImage(id), size); err != nil {
			return fmt.Errorf("growing the image of volume %s: %w", id, err)
		}
		v.Size = size
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: size, NodeExpansionRequired: !c.growOnStage}, nil
}

// CreateSnapshot copies a disk's image (frozen while it is copied if the disk is mounted
// read-write), so the snapshot is ready at once. The same name asked again returns the same
// snapshot, or AlreadyExists for another source volume.
func (c *Controller) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	name, src := req.GetName(), req.GetSourceVolumeId()
	switch {
	case name == "":
		return nil, status.Error(codes.InvalidArgument, "name is required")
	case src == "":
		return nil, status.Error(codes.InvalidArgument, "source_volume_id is required")
	}
	var s *snapshot
	err := c.store.update(func(st *state) error {
		id := nameID(snapshotPrefix, name)
		if old := st.Snapshots[id]; old != nil {
			if old.Source != src {
				return status.Errorf(codes.AlreadyExists, "snapshot %q exists of another volume, %s", name, old.Source)
			}
			s = old
			return nil
		}
		v := st.Volumes[src]
		if v == nil {
			return status.Errorf(codes.NotFound, "source volume %s does not exist", src)
		}
		image := c.store.snapshotImage(id)
		if err := withFrozen(v, func() error { return copyImage(image, c.store.volumeImage(src), v.Size) }); err != nil {
			return fmt.Errorf("snapshotting volume %s: %w", src, err)
		}
		s = &snapshot{ID: id, Name: name, Source: src, Size: v.Size, Created: time.Now().UTC()}
		st.Snapshots[id] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.CreateSnapshotResponse{Snapshot: csiSnapshot(s)}, nil
}

func csiSnapshot(s *snapshot) *csi.Snapshot {
	return &csi.Snapshot{SnapshotId: s.ID, SourceVolumeId: s.Source, SizeBytes: s.Size,
		CreationTime: timestamppb.New(s.Created), ReadyToUse: true}
}

// DeleteSnapshot removes a snapshot and its image; one already gone is fine. Volumes made from
// it are copies and stay.
func (c *Controller) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot_id is required")
	}
	err := c.store.update(func(st *state) error {
		if st.Snapshots[id] == nil {
			return nil
		}
		if err := os.Remove(c.store.snapshotImage(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the image of snapshot %s: %w", id, err)
		}
		delete(st.Snapshots, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists snapshots in ID order, paginated (see page): all of them, the one named
// by snapshot_id, or those of source_volume_id. A filter that matches nothing lists nothing.
func (c *Controller) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	resp := &csi.ListSnapshotsResponse{}
	err := c.store.view(func(st *state) error {
		var ids []string
		for _, id := range sortedKeys(st.Snapshots) {
			s := st.Snapshots[id]
			if (req.GetSnapshotId() == "" || id == req.GetSnapshotId()) &&
				(req.GetSourceVolumeId() == "" || s.Source == req.GetSourceVolumeId()) {
				ids = append(ids, id)
			}
		}
		p, next, err := page(ids, req.GetStartingToken(), req.GetMaxEntries(), snapshotPrefix)
		if err != nil {
			return err
		}
		for _, id := range p {
			resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: csiSnapshot(st.Snapshots[id])})
		}
		resp.NextToken = next
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
