package fencing_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

// nfsPut writes content to name on the export through NFS; success is the server's ack.
func nfsPut(ep serverrunner.Endpoint, dir, name, content string) error {
	src := filepath.Join(dir, name)
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nfs-cp", src, ep.URL("/export/"+name)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nfsLs(ep serverrunner.Endpoint) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nfs-ls", ep.URL("/export")).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, out)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[len(f)-1])
		}
	}
	return names, nil
}

func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if last = cond(); last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s: %v", what, timeout, last)
}

// accepted is one write a server acknowledged, with when it was sent and acknowledged.
type accepted struct {
	server     types.UID
	sent, done time.Time
}

// TestPartitionFailover cuts the server's node off the apiserver while its NFS port stays up,
// then stops the node's heartbeats: the cut-off server stops serving by itself, the
// replacement serves only after that, every acknowledged record survives, the Service IP stays,
// the node is fenced, and when it comes back it is unfenced and its stale server never serves.
func TestPartitionFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	scheme, _ := provisioner.Scheme()
	c, err := client.New(plane.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	opts := fixture.ControllerOptions(plane)
	opts.LeaderElect = false
	opts.UnfenceSettle = 30 * time.Second // the plane's node-monitor-grace-period is 20s
	ctl := fixture.StartController(ctx, opts)
	defer func() {
		if err := ctl.Stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	}()
	work := t.TempDir()
	runner, err := serverrunner.Start(ctx, serverrunner.Config{
		Client: plane.Client(), Binary: binary, Namespace: fixture.SystemNamespace, WorkDir: work,
		Kubeconfig: plane.Kubeconfig(),
		// libnfs speaks NFSv4.0; a short NFS grace keeps the test brisk (defaults: 10s/15s).
		ExtraArgs: []string{"--nfs-minor-versions=0,1,2", "--lease=5s", "--grace=5s"},
		Logf:      t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Stop()

	const ns = "fence"
	if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: ptr.To(fixture.ManagedClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	sv := &swv1.SharedVolume{}
	waitFor(t, ctx, 90*time.Second, "volume Ready", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady {
			return fmt.Errorf("phase %s", sv.Status.Phase)
		}
		return nil
	})
	serviceIP := sv.Status.ServiceIP
	old := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: sv.Status.Server.Pod.Name}, old); err != nil {
		t.Fatal(err)
	}
	deadNode := old.Spec.NodeName
	var ep1 serverrunner.Endpoint
	waitFor(t, ctx, 30*time.Second, "first server running", func() error {
		var ok bool
		if ep1, ok = runner.EndpointByUID(old.UID); !ok {
			return fmt.Errorf("no agent yet")
		}
		return nil
	})

	// A writer appends numbered records to whichever server serves, each counted only once
	// acknowledged; a prober writes to every server it knows and records what each accepted.
	src := t.TempDir()
	var (
		mu      sync.Mutex
		acked   []string
		writes  []accepted
		current = ep1
		curUID  = old.UID
		servers = map[types.UID]serverrunner.Endpoint{old.UID: ep1}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // writer
		defer wg.Done()
		for i := 0; ; {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			ep := current
			mu.Unlock()
			name := fmt.Sprintf("rec-%04d", i)
			if err := nfsPut(ep, src, name, name+"\n"); err == nil {
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
				i++
			} else {
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	go func() { // prober
		defer wg.Done()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			mu.Lock()
			eps := make(map[types.UID]serverrunner.Endpoint, len(servers))
			for k, v := range servers {
				eps[k] = v
			}
			mu.Unlock()
			for uid, ep := range eps {
				sent := time.Now()
				if err := nfsPut(ep, src, fmt.Sprintf("probe-%s-%d", uid[:8], n), "p\n"); err == nil {
					mu.Lock()
					writes = append(writes, accepted{server: uid, sent: sent, done: time.Now()})
					mu.Unlock()
				}
			}
		}
	}()
	waitFor(t, ctx, 60*time.Second, "records written before the failure", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 5 {
			return fmt.Errorf("%d records", len(acked))
		}
		return nil
	})

	// The node dies: its servers lose the apiserver (NFS port still up), its kubelet stops.
	t0 := time.Now()
	runner.PartitionNode(deadNode)
	if err := plane.FailNode(deadNode); err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s failed at %s", deadNode, t0.Format(time.RFC3339Nano))

	var replacement *corev1.Pod
	waitFor(t, ctx, 90*time.Second, "replacement server running elsewhere", func() error {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(old), p); err != nil {
			return err
		}
		if p.UID == old.UID || p.Spec.NodeName == "" {
			return fmt.Errorf("no replacement yet")
		}
		ep, ok := runner.EndpointByUID(p.UID)
		if !ok {
			return fmt.Errorf("replacement %s on %s has no agent yet", p.UID, p.Spec.NodeName)
		}
		replacement = p
		mu.Lock()
		servers[p.UID] = ep
		current, curUID = ep, p.UID
		mu.Unlock()
		return nil
	})
	if replacement.Spec.NodeName == deadNode {
		t.Fatalf("replacement placed on the dead node %s", deadNode)
	}
	tPlaced := time.Now()
	var tAck time.Time
	waitFor(t, ctx, 90*time.Second, "the writer's next write acknowledged by the replacement", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range writes {
			if w.server == curUID {
				tAck = w.done
				return nil
			}
		}
		return fmt.Errorf("no write accepted by the replacement yet")
	})
	// Keep writing a little past the failover, then stop.
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("failover: replacement placed after %s, first write acknowledged after %s", tPlaced.Sub(t0).Round(time.Millisecond), tAck.Sub(t0).Round(time.Millisecond))

	// At most one server served at any instant: every write the old server accepted finished
	// before the first write the replacement accepted was sent.
	var lastOld, firstNew time.Time
	for _, w := range writes {
		switch w.server {
		case old.UID:
			if w.done.After(lastOld) {
				lastOld = w.done
			}
		case replacement.UID:
			if firstNew.IsZero() || w.sent.Before(firstNew) {
				firstNew = w.sent
			}
		}
	}
	if lastOld.IsZero() || firstNew.IsZero() {
		t.Fatalf("the prober saw too little: last old %v, first new %v", lastOld, firstNew)
	}
	if !lastOld.Before(firstNew) {
		t.Errorf("two servers accepted writes at the same time: old until %s, new from %s", lastOld.Format(time.RFC3339Nano), firstNew.Format(time.RFC3339Nano))
	}
	t.Logf("old server's last accepted write %s after the failure; replacement's first %s after", lastOld.Sub(t0).Round(time.Millisecond), firstNew.Sub(t0).Round(time.Millisecond))
	if runner.Running(old.UID) {
		t.Error("the cut-off server is still running: it should have stopped itself when its lease could not be renewed")
	}
	if err := nfsPut(ep1, src, "after", "x"); err == nil {
		t.Error("the cut-off server still accepts writes")
	}

	// No acknowledged record is lost.
	ep2, _ := runner.EndpointByUID(replacement.UID)
	names, err := nfsLs(ep2)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range acked {
		if !slices.Contains(names, a) {
			t.Errorf("acknowledged record %s lost after the failover", a)
		}
	}
	t.Logf("%d acknowledged records, all present", len(acked))

	// The volume's record tells the story; the Service IP did not change.
	waitFor(t, ctx, 30*time.Second, "SharedVolume Ready after one failover", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
			return err
		}
		f := sv.Status.LastFailover
		if sv.Status.Phase != swv1.PhaseReady || sv.Status.FailoverCount != 1 || f == nil || f.EndTime == nil {
			return fmt.Errorf("phase %s, failovers %d, last %+v", sv.Status.Phase, sv.Status.FailoverCount, f)
		}
		return nil
	})
	if f := sv.Status.LastFailover; f.FromNode != deadNode || f.ToNode != replacement.Spec.NodeName || f.Duration == nil || f.FencedTime == nil {
		t.Errorf("last failover %+v", f)
	}
	if sv.Status.ServiceIP != serviceIP {
		t.Errorf("Service IP changed from %s to %s", serviceIP, sv.Status.ServiceIP)
	}
	if !slices.Contains(sv.Status.FencedNodes, deadNode) {
		t.Errorf("fenced nodes %v lack %s", sv.Status.FencedNodes, deadNode)
	}
	reasons := map[string]bool{}
	evs, err := plane.Client().EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		reasons[e.Reason] = true
	}
	for _, r := range []string{fencing.ReasonFenced, "FailoverComplete"} {
		if !reasons[r] {
			t.Errorf("no %s event in %s (have %v)", r, ns, reasons)
		}
	}

	// The node itself goes NotReady: fenced as a whole.
	waitFor(t, ctx, 90*time.Second, "node fenced as a whole", func() error {
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: deadNode}, n); err != nil {
			return err
		}
		if n.Labels[swv1.LabelNodeFenced] != swv1.FencedTrue {
			return fmt.Errorf("labels %v", n.Labels)
		}
		return nil
	})

	// It comes back: unfenced after the settle period, and the stale server never serves.
	if err := plane.RestoreNode(ctx, deadNode); err != nil {
		t.Fatal(err)
	}
	if err := runner.HealNode(ctx, deadNode); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 90*time.Second, "node unfenced and forgotten by the volume", func() error {
		n := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: deadNode}, n); err != nil {
			return err
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
			return err
		}
		if n.Labels[swv1.LabelNodeFenced] != "" || len(sv.Status.FencedNodes) > 0 {
			return fmt.Errorf("node labels %v, volume fenced nodes %v", n.Labels, sv.Status.FencedNodes)
		}
		return nil
	})
	if err := nfsPut(ep1, src, "stale", "x"); err == nil {
		t.Error("the stale server serves again after its node came back")
	}
	sort.Strings(acked)
}
