package fencing_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/loopdisk"
	"github.com/sharewarden/sharewarden/test/nfs4"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

// serves tells whether the server at ep acknowledges a write (FILE_SYNC) from a new NFSv4.2
// client, within a few seconds.
func serves(ep serverrunner.Endpoint) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nfs4.Dial(ctx, nfs4.Config{Addr: ep.Addr(), Owner: "fencing-check", MinorVersion: 2, CallTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer c.Abandon()
	export, err := c.LookupPath(ctx, "/export")
	if err != nil {
		return err
	}
	o, err := c.Open(ctx, export, "check", nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		return err
	}
	_, err = o.Write(ctx, 0, []byte("x"), nfsv4.FILE_SYNC4)
	return err
}

// accepted is one write a server acknowledged, with when it was sent and acknowledged.
type accepted struct {
	server     types.UID
	sent, done time.Time
}

// volume is one RWX volume served by real agents under a controller and a kubelet stand-in.
type volume struct {
	c      client.Client
	runner *serverrunner.Runner
	claim  *corev1.PersistentVolumeClaim
	sv     *swv1.SharedVolume
	podKey client.ObjectKey
	first  *corev1.Pod
	ep     serverrunner.Endpoint
}

// newVolume starts a controller and the server runner, provisions an RWX claim in ns and
// waits until its first server serves. agentArgs are added to the servers' (shipped) defaults.
func newVolume(t testing.TB, ctx context.Context, ns string, agentArgs ...string) *volume {
	t.Helper()
	v := &volume{}
	var err error
	if v.c, err = fixture.NewClient(plane); err != nil {
		t.Fatal(err)
	}
	opts := fixture.ControllerOptions(plane)
	opts.LeaderElect = false
	opts.UnfenceSettle = 30 * time.Second // the plane's node-monitor-grace-period is 20s
	// The controller and the runner outlive the test function's context: the volume is
	// removed in a cleanup, which runs after it is cancelled.
	bg := context.WithoutCancel(ctx)
	ctl := fixture.StartController(bg, opts)
	t.Cleanup(func() {
		if err := ctl.Stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	workDir := t.TempDir()
	v.runner, err = serverrunner.Start(bg, serverrunner.Config{
		Client: plane.Client(), Binary: binary, Namespace: fixture.SystemNamespace, WorkDir: workDir,
		Kubeconfig: plane.Kubeconfig(),
		ExtraArgs:  agentArgs,
		Logf:       t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop must leave no loop device attached and nothing mounted.
		v.runner.Stop()
		images, _ := filepath.Glob(filepath.Join(workDir, "disks", "*.img"))
		for _, img := range images {
			if devs, err := loopdisk.Attached(context.Background(), img); err != nil || len(devs) > 0 {
				t.Errorf("after Stop, %s is still attached to %v (%v)", img, devs, err)
			}
		}
		mounts, _ := filepath.Glob(filepath.Join(workDir, "nodes", "*", "*"))
		for _, m := range mounts {
			if loopdisk.Mounted(m) {
				t.Errorf("after Stop, %s is still mounted", m)
			}
		}
	})
	if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	v.claim = fixture.Claim(ns, "shared")
	if err := v.c.Create(ctx, v.claim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // the volume goes with its test, so later tests' runners leave it alone
		ctx := context.Background()
		if err := v.c.Delete(ctx, v.claim); err != nil {
			t.Errorf("deleting claim: %v", err)
			return
		}
		fixture.WaitFor(t, ctx, 60*time.Second, "volume removed", func() error {
			sv := &swv1.SharedVolume{}
			if err := v.c.Get(ctx, client.ObjectKeyFromObject(v.claim), sv); err == nil {
				claim := &corev1.PersistentVolumeClaim{}
				cerr := v.c.Get(ctx, client.ObjectKeyFromObject(v.claim), claim)
				return fmt.Errorf("SharedVolume still there (phase %s, conditions %+v); claim: %v finalizers %v", sv.Status.Phase, sv.Status.Conditions, cerr, claim.Finalizers)
			}
			return nil
		})
	})
	v.sv = v.waitReady(t, ctx, 0)
	v.podKey = client.ObjectKey{Namespace: fixture.SystemNamespace, Name: v.sv.Status.Server.Pod.Name}
	v.first = &corev1.Pod{}
	if err := v.c.Get(ctx, v.podKey, v.first); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 30*time.Second, "first server running", func() error {
		var ok bool
		if v.ep, ok = v.runner.EndpointByUID(v.first.UID); !ok {
			return fmt.Errorf("no agent yet")
		}
		return nil
	})
	return v
}

// waitReady waits until the SharedVolume is Ready after failovers failovers.
func (v *volume) waitReady(t testing.TB, ctx context.Context, failovers int32) *swv1.SharedVolume {
	t.Helper()
	sv := &swv1.SharedVolume{}
	fixture.WaitFor(t, ctx, 90*time.Second, fmt.Sprintf("volume Ready after %d failovers", failovers), func() error {
		if err := v.c.Get(ctx, client.ObjectKeyFromObject(v.claim), sv); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady || sv.Status.FailoverCount != failovers ||
			(failovers > 0 && (sv.Status.LastFailover == nil || sv.Status.LastFailover.EndTime == nil)) {
			return fmt.Errorf("phase %s, failovers %d, last %+v", sv.Status.Phase, sv.Status.FailoverCount, sv.Status.LastFailover)
		}
		return nil
	})
	return sv
}

// TestPartitionFailover cuts the server's node off the apiserver while its NFS port stays up,
// then stops the node's heartbeats: the cut-off server stops serving by itself, the
// replacement serves only after that, every acknowledged record survives, the Service IP stays,
// the node is fenced, and when it comes back it is unfenced and its stale server never serves.
func TestPartitionFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v := newVolume(t, ctx, "fence")
	serviceIP := v.sv.Status.ServiceIP
	l := startLoad(t, v.runner, v.first.UID, v.ep)
	fixture.WaitFor(t, ctx, 60*time.Second, "records written before the failure", func() error {
		if n := l.ackedCount(); n < 5 {
			return fmt.Errorf("%d records", n)
		}
		return nil
	})

	// On the server's node: a consumer of the volume, and the backing volume's attachment
	// (as a CSI attacher would have made it).
	deadNode := v.first.Spec.NodeName
	consumer := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: v.claim.Namespace, Name: "consumer"},
		Spec: corev1.PodSpec{
			NodeName:   deadNode,
			Containers: []corev1.Container{{Name: "app", Image: "app"}},
			Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v.claim.Name}}}},
		},
	}
	if err := v.c.Create(ctx, consumer); err != nil {
		t.Fatal(err)
	}
	backing := &corev1.PersistentVolumeClaim{}
	if err := v.c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: v.podKey.Name}, backing); err != nil {
		t.Fatal(err)
	}
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "csi-" + backing.Spec.VolumeName},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "disk.example.com", NodeName: deadNode,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(backing.Spec.VolumeName)}},
	}
	if err := v.c.Create(ctx, va); err != nil {
		t.Fatal(err)
	}

	// The application's file handle, taken before the failure.
	fh := l.open.FH()
	before, err := l.writer.GetAttr(ctx, fh)
	if err != nil {
		t.Fatal(err)
	}
	ackedBefore := l.ackedCount()

	phases := watchPhases(ctx, v)
	f := killServerNode(t, ctx, v.c, l, v.podKey)
	fixture.WaitFor(t, ctx, 90*time.Second, "the writer's records carry on past the failover", func() error {
		if n := l.ackedCount(); n < ackedBefore+20 {
			return fmt.Errorf("%d records, %d before the failover", n, ackedBefore)
		}
		return nil
	})
	l.finish()
	t.Logf("failover off %s: replacement placed after %s, first write acknowledged after %s",
		f.deadNode, f.placed.Round(time.Millisecond), f.acknowledge.Round(time.Millisecond))

	lastOld, firstNew, ok := l.overlap(f.old.UID, f.replacement.UID)
	if lastOld.IsZero() || firstNew.IsZero() {
		t.Fatalf("the prober saw too little: last old %v, first new %v", lastOld, firstNew)
	}
	if !ok {
		t.Errorf("two servers accepted writes at the same time: old until %s, new from %s", lastOld.Format(time.RFC3339Nano), firstNew.Format(time.RFC3339Nano))
	}
	if f.deadNode != deadNode {
		t.Fatalf("killed %s, expected the server's node %s", f.deadNode, deadNode)
	}
	if v.runner.Running(f.old.UID) {
		t.Error("the cut-off server is still running: it should have stopped itself when its lease could not be renewed")
	}
	if err := serves(v.ep); err == nil {
		t.Error("the cut-off server still accepts writes")
	}
	// The disk moved to another device, and the handle from before still names the file; the
	// writer's open was reclaimed and its writes carried on through it.
	ep2, _ := v.runner.EndpointByUID(f.replacement.UID)
	if ep2.Device == "" || ep2.Dev == v.ep.Dev {
		t.Fatalf("backing disk on %q (st_dev %d) after the move, %q (st_dev %d) before: the move must change the device", ep2.Device, ep2.Dev, v.ep.Device, v.ep.Dev)
	}
	after, err := l.writer.GetAttr(ctx, fh)
	if err != nil {
		t.Fatalf("GETATTR of the handle from before the failover: %v", err)
	}
	if after.FileID != before.FileID {
		t.Fatalf("the handle names fileid %d after the failover, %d before", after.FileID, before.FileID)
	}
	if n := l.open.Reclaims(); n != 1 {
		t.Errorf("the writer's open was reclaimed %d times, want 1", n)
	}
	if lost := l.lost(t); len(lost) > 0 {
		t.Errorf("%d acknowledged records lost after the failover, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	t.Logf("%d acknowledged records (%d before the failover), all present; recoveries %+v", l.ackedCount(), ackedBefore, l.writer.Recoveries())

	// The volume's record tells the story; the Service IP did not change.
	sv := v.waitReady(t, ctx, 1)
	fixture.WaitFor(t, ctx, 10*time.Second, "phases seen: through Fenced back to Ready", func() error {
		if seen := phases(); !slices.Contains(seen, swv1.PhaseFenced) || seen[len(seen)-1] != swv1.PhaseReady {
			return fmt.Errorf("phases %v", seen)
		}
		return nil
	})
	if lf := sv.Status.LastFailover; lf.FromNode != f.deadNode || lf.ToNode != f.replacement.Spec.NodeName || lf.Duration == nil || lf.FencedTime == nil {
		t.Errorf("last failover %+v", lf)
	}
	if sv.Status.ServiceIP != serviceIP {
		t.Errorf("Service IP changed from %s to %s", serviceIP, sv.Status.ServiceIP)
	}
	if !slices.Contains(sv.Status.FencedNodes, f.deadNode) {
		t.Errorf("fenced nodes %v lack %s", sv.Status.FencedNodes, f.deadNode)
	}
	reasons := map[string]bool{}
	evs, err := plane.Client().EventsV1().Events(v.claim.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		reasons[e.Reason] = true
	}
	for _, r := range []string{fencing.ReasonFenced, "FailoverComplete"} {
		if !reasons[r] {
			t.Errorf("no %s event in %s (have %v)", r, v.claim.Namespace, reasons)
		}
	}

	// The RWO attachment on the dead node was removed, so the volume could attach elsewhere.
	if err := v.c.Get(ctx, client.ObjectKeyFromObject(va), &storagev1.VolumeAttachment{}); !apierrors.IsNotFound(err) {
		t.Errorf("VolumeAttachment on the dead node still there (err %v)", err)
	}

	// The node itself goes NotReady: fenced as a whole.
	fixture.WaitFor(t, ctx, 90*time.Second, "node fenced as a whole", func() error {
		n := &corev1.Node{}
		if err := v.c.Get(ctx, client.ObjectKey{Name: f.deadNode}, n); err != nil {
			return err
		}
		if n.Labels[swv1.LabelNodeFenced] != swv1.FencedTrue {
			return fmt.Errorf("labels %v", n.Labels)
		}
		return nil
	})

	// The consumer stuck on the fenced node was evicted, so its controller can start it elsewhere.
	fixture.WaitFor(t, ctx, 30*time.Second, "consumer on the fenced node evicted", func() error {
		if err := v.c.Get(ctx, client.ObjectKeyFromObject(consumer), &corev1.Pod{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("consumer still there (err %v)", err)
		}
		return nil
	})

	// It comes back: unfenced after the settle period, and the stale server never serves.
	restoreNode(t, ctx, l, f.deadNode)
	fixture.WaitFor(t, ctx, 90*time.Second, "node unfenced and forgotten by the volume", func() error {
		n := &corev1.Node{}
		if err := v.c.Get(ctx, client.ObjectKey{Name: f.deadNode}, n); err != nil {
			return err
		}
		if err := v.c.Get(ctx, client.ObjectKeyFromObject(v.claim), sv); err != nil {
			return err
		}
		if n.Labels[swv1.LabelNodeFenced] != "" || len(sv.Status.FencedNodes) > 0 {
			return fmt.Errorf("node labels %v, volume fenced nodes %v", n.Labels, sv.Status.FencedNodes)
		}
		return nil
	})
	if err := serves(v.ep); err == nil {
		t.Error("the stale server serves again after its node came back")
	}
}

// TestRepeatedNodeKills kills the serving node again and again on one volume (each node
// coming back right after its server moved): one NFSv4.2 open held throughout, reclaimed at
// every failover, zero lost records, zero double-serving moments.
// SHAREWARDEN_NODE_KILLS sets the count (default 20).
func TestRepeatedNodeKills(t *testing.T) {
	kills := 20
	if s := os.Getenv("SHAREWARDEN_NODE_KILLS"); s != "" {
		if _, err := fmt.Sscan(s, &kills); err != nil {
			t.Fatalf("SHAREWARDEN_NODE_KILLS=%q: %v", s, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(kills)*time.Minute+3*time.Minute)
	defer cancel()
	if err := addExtraNodes(ctx); err != nil {
		t.Fatal(err)
	}
	v := newVolume(t, ctx, "repeat")
	l := startLoad(t, v.runner, v.first.UID, v.ep)
	order := []types.UID{v.first.UID}
	for i := range kills {
		f := killServerNode(t, ctx, v.c, l, v.podKey)
		order = append(order, f.replacement.UID)
		t.Logf("kill %d/%d: %s -> %s, placed %s, acknowledged %s", i+1, kills, f.deadNode, f.replacement.Spec.NodeName,
			f.placed.Round(time.Millisecond), f.acknowledge.Round(time.Millisecond))
		restoreNode(t, ctx, l, f.deadNode)
	}
	time.Sleep(time.Second)
	l.finish()
	if n := l.doubleServing(order); n != 0 {
		t.Errorf("%d handovers where two servers accepted writes at the same time", n)
	}
	if n := l.open.Reclaims(); n != kills {
		t.Errorf("the writer's open was reclaimed %d times over %d failovers", n, kills)
	}
	if lost := l.lost(t); len(lost) > 0 {
		t.Errorf("%d acknowledged records lost, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
	sv := v.waitReady(t, ctx, int32(kills))
	t.Logf("%d kills, %d acknowledged records, none lost; failovers counted %d", kills, l.ackedCount(), sv.Status.FailoverCount)
}

// watchPhases records the SharedVolume's phases as they change, until ctx ends.
func watchPhases(ctx context.Context, v *volume) func() []swv1.Phase {
	var mu sync.Mutex
	var seen []swv1.Phase
	go func() {
		for ctx.Err() == nil {
			sv := &swv1.SharedVolume{}
			if err := v.c.Get(ctx, client.ObjectKeyFromObject(v.claim), sv); err == nil {
				mu.Lock()
				if len(seen) == 0 || seen[len(seen)-1] != sv.Status.Phase {
					seen = append(seen, sv.Status.Phase)
				}
				mu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() []swv1.Phase {
		mu.Lock()
		defer mu.Unlock()
		return append([]swv1.Phase(nil), seen...)
	}
}
