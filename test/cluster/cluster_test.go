package cluster_test

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sharewarden/sharewarden/test/cluster"
)

// TestHarness is the harness's own end-to-end test: a real plane starts, fake nodes register,
// a pod is scheduled and runs, a failed node is marked unreachable by the real node lifecycle
// controller and comes back, and Stop leaves no process or temp dir behind.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		if os.Getenv(cluster.RequireE2EEnv) != "" {
			t.Fatalf("e2e required but: %v", err)
		}
		t.Skipf("skipping e2e: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	c, err := cluster.Start(ctx, cluster.Config{BinDir: binDir, Nodes: cluster.ThreeNodesTwoZones(), Progress: func(m string) { t.Log(m) }})
	if err != nil {
		t.Fatalf("starting plane: %v", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()
	cs := c.Client()

	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]int{}
	for _, n := range nodes.Items {
		if !cluster.NodeReady(&n) {
			t.Errorf("node %s not Ready", n.Name)
		}
		if n.Labels[cluster.HostnameLabel] != n.Name {
			t.Errorf("node %s hostname label %q", n.Name, n.Labels[cluster.HostnameLabel])
		}
		zones[n.Labels[cluster.ZoneLabel]]++
	}
	if len(nodes.Items) != 3 || zones["zone-a"] != 2 || zones["zone-b"] != 1 {
		t.Fatalf("want 3 nodes in zone-a:2 zone-b:1, got %d nodes %v", len(nodes.Items), zones)
	}

	const ns = "harness"
	if err := c.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{cluster.HostnameLabel: "node-b1"},
			Containers:   []corev1.Container{{Name: "c", Image: "pause"}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err = cs.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	}); err != nil {
		t.Fatalf("pod not Running: phase=%s node=%q: %v", got.Status.Phase, got.Spec.NodeName, err)
	}
	if got.Spec.NodeName != "node-b1" {
		t.Errorf("pod scheduled on %q, want node-b1 (the scheduler ignored its nodeSelector)", got.Spec.NodeName)
	}
	if got.Status.PodIP == "" {
		t.Error("running pod has no IP")
	}

	// A failed node goes Unknown with the unreachable taint; the others stay Ready.
	if err := c.FailNode("node-a1"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForNode(ctx, "node-a1", 90*time.Second, cluster.NodeUnreachable); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"node-a2", "node-b1"} {
		n, err := cs.CoreV1().Nodes().Get(ctx, other, metav1.GetOptions{})
		if err != nil || !cluster.NodeReady(n) {
			t.Errorf("node %s should stay Ready while node-a1 is down (err=%v)", other, err)
		}
	}
	if err := c.FailNode("node-a1"); err == nil {
		t.Error("failing an already failed node should be an error")
	}
	if err := c.RestoreNode(ctx, "node-a1"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitForNode(ctx, "node-a1", 60*time.Second, func(n *corev1.Node) bool {
		return cluster.NodeReady(n) && !cluster.NodeUnreachable(n) && len(n.Spec.Taints) == 0
	}); err != nil {
		t.Fatal(err)
	}

	// Stop leaves nothing behind.
	procs := c.Processes()
	if len(procs) != 7 {
		t.Errorf("want 4 control-plane processes and 3 kwoks, got %v", procs)
	}
	dir := c.WorkDir()
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range procs {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("work dir %s not removed: %v", dir, err)
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	_, err := cluster.Start(context.Background(), cluster.Config{BinDir: t.TempDir()})
	if !errors.Is(err, cluster.ErrNoBinaries) {
		t.Fatalf("want ErrNoBinaries, got %v", err)
	}
}
