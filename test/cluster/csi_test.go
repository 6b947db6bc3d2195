package cluster_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/sharewarden/sharewarden/test/cluster"
)

const fakeDriver = "fake.csi.sharewarden.test"

// TestCSISidecars is the CSI launcher's end-to-end test: the snapshot CRDs are served and
// enforce their schema, the snapshot-controller starts and stays up, every sidecar reaches a
// fake CSI driver, and csi-provisioner binds a claim of the driver's class through it.
func TestCSISidecars(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	binDir := cluster.DefaultBinDir()
	for _, check := range []func(string) error{cluster.CheckBinaries, cluster.CheckCSIBinaries} {
		if err := check(binDir); err != nil {
			if os.Getenv(cluster.RequireE2EEnv) != "" {
				t.Fatalf("e2e required but: %v", err)
			}
			t.Skipf("skipping e2e: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{BinDir: binDir, Progress: func(m string) { t.Log(m) }})
	if err != nil {
		t.Fatalf("starting plane: %v", err)
	}
	defer func() { _ = c.Stop() }()

	t0 := time.Now()
	if err := c.InstallSnapshotCRDs(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot CRDs Established in %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	sc, err := c.StartSnapshotController(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot-controller ready in %s", time.Since(t0).Round(time.Millisecond))

	dyn, err := dynamic.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	classes := dyn.Resource(schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotclasses"})
	class := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion":     "snapshot.storage.k8s.io/v1",
		"kind":           "VolumeSnapshotClass",
		"metadata":       map[string]any{"name": "fake"},
		"driver":         fakeDriver,
		"deletionPolicy": "Delete",
	}}
	if _, err := classes.Create(ctx, class, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating VolumeSnapshotClass: %v", err)
	}
	if got, err := classes.Get(ctx, "fake", metav1.GetOptions{}); err != nil || got.Object["driver"] != fakeDriver {
		t.Fatalf("VolumeSnapshotClass read back: %v, %v", got, err)
	}
	bad := class.DeepCopy()
	bad.SetName("no-policy")
	delete(bad.Object, "deletionPolicy")
	if _, err := classes.Create(ctx, bad, metav1.CreateOptions{}); err == nil {
		t.Error("a VolumeSnapshotClass without deletionPolicy was accepted: the CRD's schema is not enforced")
	}

	// A fake driver on a unix socket, and every sidecar against it.
	sockDir, err := os.MkdirTemp("", "csi-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "csi.sock")
	serveFakeDriver(t, sock)
	// A sidecar that cannot start says why, from its log.
	if _, err := c.StartCSISidecars(ctx, cluster.SidecarConfig{
		Name: "broken", Endpoint: sock, Provisioner: true, ProvisionerArgs: []string{"--no-such-flag"},
	}); err == nil || !strings.Contains(err.Error(), "unknown flag: --no-such-flag") {
		t.Errorf("a sidecar with a bad flag: want an error with its log's tail, got %v", err)
	}
	t0 = time.Now()
	sidecars, err := c.StartCSISidecars(ctx, cluster.SidecarConfig{
		Name: "fake", Endpoint: sock,
		Provisioner: true, Attacher: true, Resizer: true, Snapshotter: true,
		ProvisionerArgs: []string{"--extra-create-metadata"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sidecars.Stop()
	t.Logf("%d sidecars ready in %s", len(sidecars.List()), time.Since(t0).Round(time.Millisecond))

	// csi-provisioner binds a claim of the driver's class.
	cs := c.Client()
	immediate := storagev1.VolumeBindingImmediate
	if _, err := cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "fake"},
		Provisioner:       fakeDriver,
		VolumeBindingMode: &immediate,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const ns = "csi"
	if err := c.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	className := "fake"
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &className,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	var got *corev1.PersistentVolumeClaim
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err = cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.ClaimBound, nil
	}); err != nil {
		t.Fatalf("claim not Bound (phase %q): %v; sidecars: %v", got.Status.Phase, err, sidecars.Check())
	}
	t.Logf("claim Bound in %s", time.Since(t0).Round(time.Millisecond))
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, got.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != fakeDriver || pv.Spec.CSI.VolumeHandle != "vol-"+pv.Name {
		t.Errorf("PV %s: CSI source %+v, want driver %s and handle vol-%s", pv.Name, pv.Spec.CSI, fakeDriver, pv.Name)
	}
	if pv.Spec.CSI != nil && pv.Spec.CSI.VolumeAttributes["pvcName"] != "data" {
		t.Errorf("--extra-create-metadata did not reach CreateVolume: attributes %v", pv.Spec.CSI.VolumeAttributes)
	}

	// Everything stayed up, and Stop ends the sidecars' processes.
	if err := sc.Check(); err != nil {
		t.Error(err)
	}
	if err := sidecars.Check(); err != nil {
		t.Error(err)
	}
	var pids []int
	for _, s := range sidecars.List() {
		pids = append(pids, s.PID())
	}
	sidecars.Stop()
	sidecars.Stop()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("sidecar pid %d still running after Stop", pid)
		}
	}
	if err := sidecars.Check(); err != nil {
		t.Errorf("stopped sidecars report a failure: %v", err)
	}
}

// fakeDriverServer is the least of a CSI controller that the sidecars accept: identity, the four
// controller capabilities they look for, and volumes created by name.
type fakeDriverServer struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
}

func (fakeDriverServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: fakeDriver, VendorVersion: "test"}, nil
}

func (fakeDriverServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}},
	}}}, nil
}

func (fakeDriverServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

func (fakeDriverServer) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume names the volume after the PV ("vol-" + the name csi-provisioner asks for) and
// hands the claim's name, from --extra-create-metadata, back as a volume attribute.
func (fakeDriverServer) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      "vol-" + req.GetName(),
		CapacityBytes: req.GetCapacityRange().GetRequiredBytes(),
		VolumeContext: map[string]string{"pvcName": req.GetParameters()["csi.storage.k8s.io/pvc/name"]},
	}}, nil
}

func (fakeDriverServer) DeleteVolume(context.Context, *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	return &csi.DeleteVolumeResponse{}, nil
}

// serveFakeDriver serves the fake driver on the unix socket sock until the test ends.
func serveFakeDriver(t *testing.T, sock string) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, fakeDriverServer{})
	csi.RegisterControllerServer(srv, fakeDriverServer{})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
}
