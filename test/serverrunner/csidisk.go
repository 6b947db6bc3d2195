package serverrunner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	"github.com/sharewarden/sharewarden/test/csidisk"
	"github.com/sharewarden/sharewarden/test/loopdisk"
)

// This file plays the kubelet's part for a backing volume of the csidisk driver: the attach
// (ControllerPublishVolume) is the external-attacher's, through the VolumeAttachment; here the
// node service of the pod's node stages the volume (its image on a loop device, mounted once
// per node) and publishes it for the server (a bind mount), and unpublishes and unstages it
// once the server has exited.

// Bounds of the wait for the attacher. A kubelet waits for the VolumeAttachment; this retries
// NodeStageVolume, which the driver refuses until the volume is attached to this node and no
// longer mounted on the node it left.
const (
	attachWait  = 45 * time.Second
	attachRetry = 500 * time.Millisecond
	// csiCallTimeout bounds each call to a node service.
	csiCallTimeout = 60 * time.Second
)

// isCSIDisk tells whether a PV is a csidisk volume.
func isCSIDisk(pv *corev1.PersistentVolume) bool {
	return pv.Spec.CSI != nil && pv.Spec.CSI.Driver == csidisk.DriverName
}

// csiPaths are where a volume is staged on a node (once per node, as a kubelet's globalmount)
// and published for one server pod (as a kubelet's per-pod mount).
func (r *Runner) csiPaths(node, pv string, pod *corev1.Pod) (staging, target string) {
	base := filepath.Join(r.cfg.WorkDir, "nodes", node)
	return filepath.Join(base, "staging", pv), filepath.Join(base, "pods", string(pod.UID), pv)
}

// mountCSIDisk stages and publishes a csidisk volume for a server pod on node.
func (r *Runner) mountCSIDisk(ctx context.Context, pv *corev1.PersistentVolume, pod *corev1.Pod, node string) (string, *netDisk, error) {
	if r.cfg.CSIDisk == nil {
		return "", nil, fmt.Errorf("backing PV %s is a %s volume, but the runner has no Config.CSIDisk", pv.Name, csidisk.DriverName)
	}
	client := r.cfg.CSIDisk(node)
	if client == nil {
		return "", nil, fmt.Errorf("backing PV %s: no %s node service on node %s", pv.Name, csidisk.DriverName, node)
	}
	staging, target := r.csiPaths(node, pv.Name, pod)
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return "", nil, fmt.Errorf("staging dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", nil, fmt.Errorf("target dir: %w", err)
	}
	src := pv.Spec.CSI
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: src.FSType, MountFlags: pv.Spec.MountOptions}},
		// Backing claims are ReadWriteOnce.
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	stage := &csi.NodeStageVolumeRequest{VolumeId: src.VolumeHandle, StagingTargetPath: staging,
		VolumeCapability: capability, VolumeContext: src.VolumeAttributes}
	logf := func(format string, args ...any) { r.cfg.Logf("disk %s: "+format, append([]any{pv.Name}, args...)...) }
	if err := stageWhenAttached(ctx, client, stage, node, attachWait, attachRetry, logf); err != nil {
		return "", nil, fmt.Errorf("staging backing PV %s on %s: %w", pv.Name, node, err)
	}
	d := &netDisk{release: func(ctx context.Context) error {
		return unstage(ctx, client, src.VolumeHandle, staging, target)
	}}
	cctx, cancel := context.WithTimeout(ctx, csiCallTimeout)
	defer cancel()
	_, err := client.NodePublishVolume(cctx, &csi.NodePublishVolumeRequest{VolumeId: src.VolumeHandle, StagingTargetPath: staging,
		TargetPath: target, VolumeCapability: capability, Readonly: src.ReadOnly, VolumeContext: src.VolumeAttributes})
	if err != nil {
		err = fmt.Errorf("publishing backing PV %s on %s: %w", pv.Name, node, err)
		if uerr := d.release(context.WithoutCancel(ctx)); uerr != nil {
			logf("%v", uerr)
		}
		return "", nil, err
	}
	d.device = loopdisk.MountDevice(staging)
	var st syscall.Stat_t
	if err := syscall.Stat(target, &st); err != nil {
		if uerr := d.release(context.WithoutCancel(ctx)); uerr != nil {
			logf("%v", uerr)
		}
		return "", nil, fmt.Errorf("stat of the mount: %w", err)
	}
	d.dev = st.Dev
	return target, d, nil
}

// stageWhenAttached calls NodeStageVolume until it succeeds, retrying every retry while the
// driver answers that the volume is not ready for this node (FailedPrecondition: not attached
// here yet, or still mounted on the node it left) or the node service is not up yet
// (Unavailable), for at most wait. It says once, through logf, that it is waiting.
func stageWhenAttached(ctx context.Context, node csi.NodeClient, req *csi.NodeStageVolumeRequest, nodeName string, wait, retry time.Duration, logf func(string, ...any)) error {
	deadline := time.Now().Add(wait)
	for waiting := false; ; waiting = true {
		cctx, cancel := context.WithTimeout(ctx, csiCallTimeout)
		_, err := node.NodeStageVolume(cctx, req)
		cancel()
		switch status.Code(err) {
		case codes.OK:
			if waiting {
				logf("attached to %s and staged", nodeName)
			}
			return nil
		case codes.FailedPrecondition, codes.Unavailable, codes.Aborted:
		default:
			return err
		}
		if !time.Now().Add(retry).Before(deadline) {
			return fmt.Errorf("not attached to %s after %s (is the external-attacher running, and the VolumeAttachment of the node it left deleted?): %w", nodeName, wait, err)
		}
		if !waiting {
			logf("waiting up to %s for it to be attached to %s (ControllerPublishVolume through its VolumeAttachment): %v", wait, nodeName, status.Convert(err).Message())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting to be attached to %s: %w", nodeName, context.Cause(ctx))
		case <-time.After(retry):
		}
	}
}

// unstage unpublishes and unstages a csidisk volume, as a kubelet does once the pod's
// containers have exited.
func unstage(ctx context.Context, node csi.NodeClient, volumeID, staging, target string) error {
	ctx, cancel := context.WithTimeout(ctx, csiCallTimeout)
	defer cancel()
	if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: volumeID, TargetPath: target}); err != nil {
		return fmt.Errorf("unpublishing %s from %s: %w", volumeID, target, err)
	}
	if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: volumeID, StagingTargetPath: staging}); err != nil {
		return fmt.Errorf("unstaging %s from %s: %w", volumeID, staging, err)
	}
	return nil
}
