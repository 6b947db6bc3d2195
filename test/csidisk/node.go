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

	"github.com/sharewarden/sharewarden/test/loopdisk"
)

// Node is the CSI node service of one node: it mounts the disks attached to that node.
type Node struct {
	csi.UnimplementedNodeServer
	store      store
	nodeID     string
	maxVolumes int64
}

// NewNode returns the node service of cfg.NodeID over cfg.Dir and registers the node, so that
// the controller can attach disks to it.
func NewNode(cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("csidisk: Config.NodeID is empty")
	}
	if cfg.MaxVolumes < 0 {
		return nil, fmt.Errorf("csidisk: Config.MaxVolumes %d is negative", cfg.MaxVolumes)
	}
	s, err := newStore(cfg.Dir)
	if err != nil {
		return nil, err
	}
	err = s.update(func(st *state) error {
		st.Nodes[cfg.NodeID] = nodeInfo{MaxVolumes: cfg.MaxVolumes}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("registering node %s: %w", cfg.NodeID, err)
	}
	return &Node{store: s, nodeID: cfg.NodeID, maxVolumes: cfg.MaxVolumes}, nil
}

func (n *Node) register(srv *grpc.Server) { csi.RegisterNodeServer(srv, n) }

func (n *Node) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.nodeID, MaxVolumesPerNode: n.maxVolumes}, nil
}

// nodeCapabilities are exactly the node RPCs implemented here.
var nodeCapabilities = []csi.NodeServiceCapability_RPC_Type{
	csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
	csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
	csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
}

func (n *Node) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	resp := &csi.NodeGetCapabilitiesResponse{}
	for _, t := range nodeCapabilities {
		resp.Capabilities = append(resp.Capabilities, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return resp, nil
}

// NodeStageVolume attaches the disk's image on a loop device (never the one it had when last
// staged) and mounts it at the staging path, read-only if so attached; a read-write disk is
// checked and its filesystem grown to the image first (offline: see loopdisk.Options.Grow). The disk must be attached to this node
// (ControllerPublishVolume) and mounted on no other: otherwise FailedPrecondition, which a
// kubelet retries. Staging twice at the same path is a no-op.
func (n *Node) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	p, err := stageParams(req)
	if err != nil {
		return nil, err
	}
	err = n.store.update(func(st *state) error {
		v := st.Volumes[p.volumeID]
		if v == nil {
			return status.Errorf(codes.NotFound, "volume %s does not exist", p.volumeID)
		}
		if s := v.Staged; s != nil {
			switch {
			case s.Node == n.nodeID && s.Path == p.path && loopdisk.Mounted(p.path):
				return nil
			case s.Node == n.nodeID && s.Path == p.path:
				// Recorded but no longer mounted (the machine restarted): stage it again.
				if err := n.detach(ctx, v); err != nil {
					return err
				}
			case s.Node == n.nodeID:
				return status.Errorf(codes.AlreadyExists, "volume %s is already staged on this node at %s", p.volumeID, s.Path)
			default:
				return status.Errorf(codes.FailedPrecondition, "volume %s is still mounted on node %s: that node must unstage it first", p.volumeID, s.Node)
			}
		}
		if v.AttachedTo != n.nodeID {
			to := v.AttachedTo
			if to == "" {
				to = "no node"
			}
			return status.Errorf(codes.FailedPrecondition, "volume %s is not attached to node %s (it is attached to %s): ControllerPublishVolume to this node first", p.volumeID, n.nodeID, to)
		}
		d, err := loopdisk.AttachWith(ctx, n.store.volumeImage(v.ID), p.path, loopdisk.Options{
			Avoid: []string{v.LastDevice}, ReadOnly: v.AttachedReadOnly, MountOptions: p.mountFlags, Grow: true})
		if err != nil {
			return fmt.Errorf("staging volume %s: %w", v.ID, err)
		}
		v.Staged = &staging{Node: n.nodeID, Path: p.path, Device: d.Device, ReadOnly: v.AttachedReadOnly}
		v.LastDevice = d.Device
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

// detach unmounts v's staging mount and frees its loop device, and forgets them. A device no
// longer backed by v's image (after a machine restart, say) is not touched.
func (n *Node) detach(ctx context.Context, v *volume) error {
	image := n.store.volumeImage(v.ID)
	devs, err := loopdisk.Attached(ctx, image)
	if err != nil {
		return fmt.Errorf("unstaging volume %s: %w", v.ID, err)
	}
	d := &loopdisk.Disk{Image: image, Device: v.Staged.Device, MountPoint: v.Staged.Path}
	if !slices.Contains(devs, d.Device) {
		if loopdisk.Mounted(d.MountPoint) {
			return status.Errorf(codes.Internal, "volume %s: %s is mounted but its recorded device %s no longer holds the image", v.ID, d.MountPoint, d.Device)
		}
		d.Device = "" // nothing of ours left to detach
	}
	if err := d.Detach(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("unstaging volume %s: %w", v.ID, err)
	}
	v.Staged = nil
	return nil
}

// NodeUnstageVolume unmounts the staging path and detaches the loop device; a volume not
// staged there is fine. It refuses (FailedPrecondition) while the volume is still published.
func (n *Node) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	path := req.GetStagingTargetPath()
	if err := checkPath("staging_target_path", path); err != nil {
		return nil, err
	}
	err := n.store.update(func(st *state) error {
		v := st.Volumes[req.GetVolumeId()]
		if v == nil || v.Staged == nil || v.Staged.Node != n.nodeID || v.Staged.Path != cleanPath(path) {
			return nil
		}
		if len(v.Targets) > 0 {
			return status.Errorf(codes.FailedPrecondition, "volume %s is still published at %s: unpublish it first", v.ID, v.Targets[0].Path)
		}
		return n.detach(ctx, v)
	})
	if err != nil {
		return nil, err
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// NodePublishVolume bind-mounts the staged volume at the target path (created if missing),
// read-only when asked. Publishing twice alike is a no-op; again with another readonly is
// AlreadyExists.
func (n *Node) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	p, err := publishParams(req)
	if err != nil {
		return nil, err
	}
	err = n.store.update(func(st *state) error {
		v := st.Volumes[p.volumeID]
		if v == nil {
			return status.Errorf(codes.NotFound, "volume %s does not exist", p.volumeID)
		}
		if v.Staged == nil || v.Staged.Node != n.nodeID || v.Staged.Path != p.staging {
			return status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s on node %s: NodeStageVolume first", p.volumeID, p.staging, n.nodeID)
		}
		if i := slices.IndexFunc(v.Targets, func(t target) bool { return t.Path == p.target }); i >= 0 {
			switch {
			case !loopdisk.Mounted(p.target):
				v.Targets = slices.Delete(v.Targets, i, i+1) // lost (machine restart): mount again
			case v.Targets[i].ReadOnly != p.readOnly:
				return status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with readonly=%t", p.volumeID, p.target, v.Targets[i].ReadOnly)
			default:
				return nil
			}
		}
		if loopdisk.Mounted(p.target) {
			return status.Errorf(codes.AlreadyExists, "target_path %s is already a mount point, not of volume %s", p.target, p.volumeID)
		}
		if err := bindMount(p.staging, p.target, p.readOnly); err != nil {
			return fmt.Errorf("publishing volume %s: %w", p.volumeID, err)
		}
		v.Targets = append(v.Targets, target{Path: p.target, ReadOnly: p.readOnly})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// bindMount mounts staging at target (created if missing), read-only if asked: a read-only
// bind mount takes a second, remounting step.
func bindMount(staging, target string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("creating the target: %w", err)
	}
	if err := syscall.Mount(staging, target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mounting %s at %s: %w", staging, target, err)
	}
	if readOnly {
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			_ = syscall.Unmount(target, 0)
			return fmt.Errorf("making %s read-only: %w", target, err)
		}
	}
	return nil
}

// unmountBusyRetries bounds how long an unmount waits for files a just-exited process held to
// close (as loopdisk's Detach does).
const unmountBusyRetries = 50

// NodeUnpublishVolume unmounts the target and removes it; a target already gone, or never
// published, is fine.
func (n *Node) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	}
	if err := checkPath("target_path", req.GetTargetPath()); err != nil {
		return nil, err
	}
	tp := cleanPath(req.GetTargetPath())
	err := n.store.update(func(st *state) error {
		v := st.Volumes[req.GetVolumeId()]
		i := -1
		if v != nil && v.Staged != nil && v.Staged.Node == n.nodeID {
			i = slices.IndexFunc(v.Targets, func(t target) bool { return t.Path == tp })
		}
		if i < 0 {
			if !loopdisk.Mounted(tp) {
				_ = os.Remove(tp) // an empty directory left by an earlier call; anything else stays
			}
			return nil
		}
		if err := unmount(tp); err != nil {
			return fmt.Errorf("unpublishing volume %s: %w", v.ID, err)
		}
		if err := os.Remove(tp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("unpublishing volume %s: removing the target: %w", v.ID, err)
		}
		v.Targets = slices.Delete(v.Targets, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// unmount unmounts dir if it is a mount point, retrying for a while while it is busy.
func unmount(dir string) error {
	var err error
	for range unmountBusyRetries {
		if !loopdisk.Mounted(dir) {
			return nil
		}
		if err = syscall.Unmount(dir, 0); err == nil || !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

// mountedAt finds the volume of a request on this node and checks that path is its staging
// path or one of its targets.
func (n *Node) mountedAt(st *state, id, path string) (*volume, error) {
	v := st.Volumes[id]
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", id)
	}
	path = cleanPath(path)
	if v.Staged == nil || v.Staged.Node != n.nodeID ||
		(v.Staged.Path != path && !slices.ContainsFunc(v.Targets, func(t target) bool { return t.Path == path })) {
		return nil, status.Errorf(codes.NotFound, "volume %s is not mounted at %s on node %s", id, path, n.nodeID)
	}
	return v, nil
}

// NodeExpandVolume grows the mounted filesystem to its image, which the controller grew: the
// loop device re-reads the image's size, and resize2fs grows ext4 online. Where the process
// lacks CAP_SYS_RESOURCE the kernel refuses an online resize: FailedPrecondition, and the
// volume grows when it is next staged.
func (n *Node) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case req.GetVolumePath() == "":
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	if req.GetVolumeCapability() != nil {
		if p := checkCapability(req.GetVolumeCapability()); p != "" {
			return nil, status.Error(codes.InvalidArgument, p)
		}
	}
	if err := checkRange(req.GetCapacityRange()); err != nil {
		return nil, err
	}
	var size int64
	err := n.store.view(func(st *state) error {
		v, err := n.mountedAt(st, req.GetVolumeId(), req.GetVolumePath())
		if err != nil {
			return err
		}
		if v.Staged.ReadOnly {
			return status.Errorf(codes.FailedPrecondition, "volume %s is mounted read-only on node %s and cannot grow there", v.ID, n.nodeID)
		}
		if r := req.GetCapacityRange().GetRequiredBytes(); r > v.Size {
			return status.Errorf(codes.OutOfRange, "volume %s is %d bytes, less than the %d asked: expand it through the controller (ControllerExpandVolume) first", v.ID, v.Size, r)
		}
		d := &loopdisk.Disk{Image: n.store.volumeImage(v.ID), Device: v.Staged.Device, MountPoint: v.Staged.Path}
		if err := d.Grow(ctx); errors.Is(err, loopdisk.ErrNoOnlineResize) {
			return status.Errorf(codes.FailedPrecondition, "expanding volume %s: %v", v.ID, err)
		} else if err != nil {
			return fmt.Errorf("expanding volume %s: %w", v.ID, err)
		}
		size = v.Size
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// NodeGetVolumeStats reports the filesystem's space and inodes.
func (n *Node) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	switch {
	case req.GetVolumeId() == "":
		return nil, status.Error(codes.InvalidArgument, "volume_id is required")
	case req.GetVolumePath() == "":
		return nil, status.Error(codes.InvalidArgument, "volume_path is required")
	}
	err := n.store.view(func(st *state) error {
		_, err := n.mountedAt(st, req.GetVolumeId(), req.GetVolumePath())
		return err
	})
	if err != nil {
		return nil, err
	}
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(req.GetVolumePath(), &sfs); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", req.GetVolumePath(), err)
	}
	bs := sfs.Bsize
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: int64(sfs.Blocks) * bs, Available: int64(sfs.Bavail) * bs, Used: int64(sfs.Blocks-sfs.Bfree) * bs},
		{Unit: csi.VolumeUsage_INODES, Total: int64(sfs.Files), Available: int64(sfs.Ffree), Used: int64(sfs.Files - sfs.Ffree)},
	}}, nil
}
