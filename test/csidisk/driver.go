// Package csidisk is a small but real CSI driver, disk.csi.sharewarden.test, for the test
// plane: it keeps each volume as an ext4 filesystem image file in a directory and behaves like
// a cloud's network disks, so ShareWarden's RWO backing claims can be provisioned, attached,
// moved, expanded and snapshotted through the real external sidecars.
//
//   - The controller service creates a volume as a sparse formatted image (or a copy of a
//     snapshot's or another volume's image), grows it, snapshots it, and records the one node
//     a volume is attached to (ControllerPublishVolume): publishing to a second node while it is
//     attached to another fails, as a cloud disk's attach does, so the volume moves only after
//     its VolumeAttachment is detached.
//   - A node service serves one node (Config.NodeID): NodeStageVolume attaches the image on a
//     loop device (test/loopdisk), never the one it had last, and mounts it; NodePublishVolume
//     bind-mounts that for the workload; NodeExpandVolume grows the filesystem online.
//
// Everything the driver knows is on disk in Config.Dir (state.json beside the images, changed
// under a flock), so one process can run the controller and one node service per node, each
// on its own socket (see Listen and Serve), and a restarted process carries on. Needs root,
// losetup, mkfs.ext4, e2fsck, resize2fs and mount. Online expansion also needs
// CAP_SYS_RESOURCE (the kernel's rule for resizing a mounted ext4); without it
// NodeExpandVolume fails with FailedPrecondition and the filesystem grows at the next
// NodeStageVolume instead.
package csidisk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// DriverName is the CSI driver name, the StorageClass provisioner of the disks.
const DriverName = "disk.csi.sharewarden.test"

// version is the vendor version GetPluginInfo reports.
const version = "v1"

// Config configures the controller service and the node services. All services of one
// simulated cloud share Dir.
type Config struct {
	// Dir holds the state file and the images (volumes/, snapshots/). Required.
	Dir string
	// NodeID is the node a node service serves, the Kubernetes node name; NewNode registers it,
	// and only registered nodes can be published to. Unused by the controller.
	NodeID string
	// MaxVolumes is how many volumes can be attached to the node at once (NodeGetInfo's
	// max_volumes_per_node, enforced by ControllerPublishVolume); 0 for no limit.
	MaxVolumes int64
	// DefaultSize is a volume's size when CreateVolume names none; 0 for 1 GiB.
	DefaultSize int64
	// GrowOnStage makes ControllerExpandVolume report no node expansion required: the
	// filesystem grows at the disk's next NodeStageVolume instead of online. For machines
	// where a mounted ext4 cannot grow (resize2fs online needs CAP_SYS_RESOURCE), so that the
	// test plane's backing claims finish resizing without a kubelet's online expansion.
	GrowOnStage bool
}

// Service is a CSI service Serve can serve: a *Controller or a *Node.
type Service interface {
	register(*grpc.Server)
}

// Listen listens on a unix socket at path, replacing a stale socket an earlier process left.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return l, nil
}

// Serve serves the identity service and the given services on l until ctx ends; then it stops
// gracefully (calls in flight finish) and returns nil. Errors that are not gRPC statuses are
// returned to clients as Internal; failed calls are logged through the logger in ctx.
func Serve(ctx context.Context, l net.Listener, services ...Service) error {
	logger := log.FromContext(ctx).WithValues("driver", DriverName)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(log.IntoContext(ctx, logger), req)
		if err == nil {
			logger.V(1).Info("CSI call", "method", info.FullMethod)
			return resp, nil
		}
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Internal, err.Error())
		}
		logger.V(1).Info("CSI call failed", "method", info.FullMethod, "error", err.Error())
		return nil, err
	}))
	csi.RegisterIdentityServer(srv, identity{})
	for _, s := range services {
		s.register(srv)
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.GracefulStop()
		case <-stopped:
		}
	}()
	defer close(stopped)
	if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving CSI on %s: %w", l.Addr(), err)
	}
	return nil
}

// Dial connects to a driver socket, as the sidecars or a kubelet would.
func Dial(path string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", path, err)
	}
	return conn, nil
}

// identity is the CSI identity service, the same on every socket.
type identity struct {
	csi.UnimplementedIdentityServer
}

func (identity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: DriverName, VendorVersion: version}, nil
}

// GetPluginCapabilities: a controller service, and online expansion (a disk grows while
// attached and mounted). No topology: a network disk attaches to any node.
func (identity) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
			Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}}, nil
}

func (identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
