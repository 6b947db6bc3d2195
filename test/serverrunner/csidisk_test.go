package serverrunner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sharewarden/sharewarden/test/csidisk"
	"github.com/sharewarden/sharewarden/test/loopdisk"
)

// stagingNode answers NodeStageVolume with the codes in order, then OK.
type stagingNode struct {
	csi.NodeClient
	mu    sync.Mutex
	codes []codes.Code
	calls int
}

func (n *stagingNode) NodeStageVolume(context.Context, *csi.NodeStageVolumeRequest, ...grpc.CallOption) (*csi.NodeStageVolumeResponse, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	if len(n.codes) == 0 {
		return &csi.NodeStageVolumeResponse{}, nil
	}
	c := n.codes[0]
	n.codes = n.codes[1:]
	return nil, status.Errorf(c, "answer %d", n.calls)
}

func TestStageWhenAttached(t *testing.T) {
	fp, un := codes.FailedPrecondition, codes.Unavailable
	cases := []struct {
		name      string
		answers   []codes.Code
		wait      time.Duration
		wantCalls int
		// atLeast makes wantCalls a minimum, for a case bounded by time.
		atLeast  bool
		wantCode codes.Code
		wantErr  string
		wantLogs []string
	}{
		{name: "attached already", wantCalls: 1},
		{name: "attached after a while", answers: []codes.Code{fp, fp, fp}, wantCalls: 4,
			wantLogs: []string{"waiting up to 1s for it to be attached to node-a", "attached to node-a and staged"}},
		{name: "node service starting", answers: []codes.Code{un}, wantCalls: 2,
			wantLogs: []string{"waiting up to 1s", "attached to node-a and staged"}},
		{name: "never attached", answers: []codes.Code{fp, fp, fp, fp, fp, fp, fp, fp, fp, fp}, wait: 35 * time.Millisecond,
			wantCalls: 2, atLeast: true, wantCode: fp, wantErr: "not attached to node-a after 35ms",
			wantLogs: []string{"waiting up to 35ms"}},
		{name: "other errors at once", answers: []codes.Code{codes.NotFound}, wantCalls: 1, wantCode: codes.NotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := &stagingNode{codes: tc.answers}
			var logs []string
			logf := func(format string, args ...any) { logs = append(logs, fmt.Sprintf(format, args...)) }
			wait := tc.wait
			if wait == 0 {
				wait = time.Second
			}
			err := stageWhenAttached(context.Background(), n, &csi.NodeStageVolumeRequest{}, "node-a", wait, 10*time.Millisecond, logf)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("code %s, want %s (%v)", got, tc.wantCode, err)
			}
			if tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not say %q", err, tc.wantErr)
			}
			if n.calls != tc.wantCalls && !(tc.atLeast && n.calls > tc.wantCalls && n.calls < len(tc.answers)) {
				t.Fatalf("%d calls, want %d (at least: %t)", n.calls, tc.wantCalls, tc.atLeast)
			}
			if len(logs) != len(tc.wantLogs) {
				t.Fatalf("logged %q, want %d lines like %q", logs, len(tc.wantLogs), tc.wantLogs)
			}
			for i, want := range tc.wantLogs {
				if !strings.Contains(logs[i], want) {
					t.Fatalf("log line %q does not say %q", logs[i], want)
				}
			}
		})
	}
}

// TestCSIDiskMove mounts a csidisk volume for a server on one node, then on another, as the
// runner does when a server pod moves: through the nodes' sockets, with the attach made by the
// test (the external-attacher's part) while the runner waits for it.
func TestCSIDiskMove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the csidisk driver attaches loop devices and mounts them")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "e2fsck", "resize2fs", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	cfg := csidisk.Config{Dir: filepath.Join(dir, "cloud")}
	ctrl, err := csidisk.NewController(cfg)
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]csi.NodeClient{}
	var served sync.WaitGroup
	for _, node := range []string{"node-a", "node-b"} {
		cfg.NodeID = node
		n, err := csidisk.NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, node+".sock")
		l, err := csidisk.Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		served.Go(func() {
			if err := csidisk.Serve(ctx, l, n); err != nil {
				t.Error(err)
			}
		})
		conn, err := csidisk.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		clients[node] = csi.NewNodeClient(conn)
	}
	t.Cleanup(func() { cancel(); served.Wait() })

	rwo := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	vol, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "pvc-backing", VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 32 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	id := vol.GetVolume().GetVolumeId()
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-backing"}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: csidisk.DriverName, VolumeHandle: id}}}}
	var logs []string
	var logMu sync.Mutex
	r := &Runner{cfg: Config{WorkDir: filepath.Join(dir, "work"), CSIDisk: func(node string) csi.NodeClient { return clients[node] },
		Logf: func(format string, args ...any) {
			logMu.Lock()
			defer logMu.Unlock()
			logs = append(logs, fmt.Sprintf(format, args...))
		}}}
	// attachLater attaches the volume to node a moment from now, as the attacher would.
	attachLater := func(node string) {
		time.AfterFunc(700*time.Millisecond, func() {
			if _, err := ctrl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: rwo}); err != nil {
				t.Error(err)
			}
		})
	}

	attachLater("node-a")
	podA := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "server-a", UID: types.UID("uid-a")}}
	dataA, diskA, err := r.mountCSIDisk(ctx, pv, podA, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataA, "file"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if diskA.device == "" || diskA.dev == 0 {
		t.Fatalf("disk on node-a: device %q st_dev %d", diskA.device, diskA.dev)
	}

	// The server moves: the runner releases node-a's mount once the server exited, the
	// attacher moves the attachment, and node-b mounts the disk on another device.
	if err := diskA.release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "node-a"}); err != nil {
		t.Fatal(err)
	}
	attachLater("node-b")
	podB := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "server-b", UID: types.UID("uid-b")}}
	dataB, diskB, err := r.mountCSIDisk(ctx, pv, podB, "node-b")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dataB, "file")); err != nil || string(got) != "kept" {
		t.Fatalf("moved disk: file %q (%v), want what was written on node-a", got, err)
	}
	if diskB.device == diskA.device || diskB.dev == diskA.dev {
		t.Fatalf("node-b has the disk on %s (st_dev %d), as node-a had: want another device", diskB.device, diskB.dev)
	}
	if err := diskB.release(ctx); err != nil {
		t.Fatal(err)
	}
	if devs, err := loopdisk.Attached(ctx, filepath.Join(dir, "cloud", "volumes", id+".img")); err != nil || len(devs) > 0 {
		t.Fatalf("loop devices left: %v (%v)", devs, err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if len(logs) == 0 || !strings.Contains(strings.Join(logs, "\n"), "waiting up to") {
		t.Fatalf("no line about waiting for the attach in %q", logs)
	}
}
