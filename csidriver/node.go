package csidriver

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Volume context keys: where a volume is served.
const (
	// ContextServer is the volume's Service ClusterIP, the address it is mounted from for its
	// whole life.
	ContextServer = "server"
	// ContextShare is the export's NFSv4 pseudo path.
	ContextShare = "share"
)

// NodeServer is the CSI node service: it mounts a volume's export for a pod, and unmounts it.
type NodeServer struct {
	csi.UnimplementedNodeServer
	NodeID  string
	Mounter mount.Interface
}

// publish is what NodePublishVolume was asked, checked.
type publish struct {
	source, target string
	options        []string
	// fallback is true when the version was the default and 4.1 may be tried after 4.2.
	fallback bool
}

// publishParams checks a NodePublishVolume request and works out the mount.
func publishParams(req *csi.NodePublishVolumeRequest) (publish, error) {
	var problems []string
	if req.GetVolumeId() == "" {
		problems = append(problems, "volume_id is empty")
	}
	target := req.GetTargetPath()
	if target == "" || !path.IsAbs(target) {
		problems = append(problems, fmt.Sprintf("target_path %q: want an absolute path", target))
	}
	capability := req.GetVolumeCapability()
	var flags []string
	switch {
	case capability == nil:
		problems = append(problems, "volume_capability is missing")
	case capability.GetBlock() != nil:
		problems = append(problems, "block access is not supported: ShareWarden volumes are filesystems served over NFS")
	case capability.GetMount() == nil:
		problems = append(problems, "volume_capability has no mount access type")
	default:
		flags = capability.GetMount().GetMountFlags()
		if fs := capability.GetMount().GetFsType(); fs != "" && fs != "nfs" && fs != "nfs4" {
			problems = append(problems, fmt.Sprintf("fs_type %q: an NFS volume has no filesystem type of its own; leave it empty", fs))
		}
	}
	server, share := req.GetVolumeContext()[ContextServer], req.GetVolumeContext()[ContextShare]
	if _, err := netip.ParseAddr(server); err != nil {
		problems = append(problems, fmt.Sprintf("volume_context %s %q: want the volume's Service IP", ContextServer, server))
	}
	if !path.IsAbs(share) {
		problems = append(problems, fmt.Sprintf("volume_context %s %q: want the export's absolute path", ContextShare, share))
	}
	opts, err := MergeMountOptions(flags, req.GetReadonly())
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return publish{}, status.Error(codes.InvalidArgument, strings.Join(problems, "; "))
	}
	host := server
	if addr, _ := netip.ParseAddr(server); addr.Is6() {
		host = "[" + server + "]"
	}
	return publish{source: host + ":" + share, target: target, options: opts, fallback: !explicitVersion(flags)}, nil
}

// NodePublishVolume mounts the volume's export at the target path, at NFSv4.2 or, when that is
// refused and the user named no version, 4.1. Publishing twice is a no-op.
func (n *NodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	p, err := publishParams(req)
	if err != nil {
		return nil, err
	}
	mounted, err := n.Mounter.IsMountPoint(p.target)
	if os.IsNotExist(err) {
		if err := os.MkdirAll(p.target, 0o750); err != nil {
			return nil, status.Errorf(codes.Internal, "creating target %s: %v", p.target, err)
		}
		mounted = false
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "checking target %s: %v", p.target, err)
	}
	if mounted {
		return &csi.NodePublishVolumeResponse{}, nil
	}
	err = n.Mounter.Mount(p.source, p.target, "nfs", p.options)
	if err != nil && p.fallback {
		log.FromContext(ctx).Info("NFSv4.2 mount refused; trying 4.1", "volume", req.GetVolumeId(), "error", err.Error())
		err = n.Mounter.Mount(p.source, p.target, "nfs", withVersion(p.options, fallbackVersion))
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "mounting %s at %s with %s: %v", p.source, p.target, strings.Join(p.options, ","), err)
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// NodeUnpublishVolume unmounts the target and removes it; a target already gone is fine.
func (n *NodeServer) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume_id and target_path are required")
	}
	if err := mount.CleanupMountPoint(req.GetTargetPath(), n.Mounter, true); err != nil {
		return nil, status.Errorf(codes.Internal, "unmounting %s: %v", req.GetTargetPath(), err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

// NodeGetCapabilities: no staging (an NFS mount needs none).
func (n *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

// NodeGetInfo names the node.
func (n *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	if n.NodeID == "" {
		return nil, status.Error(codes.FailedPrecondition, "the node service was started without a node name (--node-name or $NODE_NAME)")
	}
	return &csi.NodeGetInfoResponse{NodeId: n.NodeID}, nil
}
