package safety_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/nfs4"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

// holder is an application on an NFSv4.1 mount of the Service address: it holds one open file
// through everything and appends fixed-size records with FILE_SYNC; its client reconnects,
// reclaims the open after a server restart and carries on, as the Linux client does. A write
// that returns an error is one an application would have seen.
type holder struct {
	c    *nfs4.Client
	open *nfs4.Open
	mu   sync.Mutex
	n    int
	errs []error
	// acks are the times records were acknowledged, to measure pauses.
	acks []time.Time
	stop chan struct{}
	done chan struct{}
}

const recordSize = 32

func holderRecord(i int) []byte {
	return []byte(fmt.Sprintf("%-31d\n", i))
}

func startHolder(t testing.TB, ctx context.Context, addr string) *holder {
	t.Helper()
	c, err := nfs4.Dial(ctx, nfs4.Config{Addr: addr, Owner: "safety-holder", MinorVersion: 2, Recover: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("NFSv4.2 client at the Service address: %v", err)
	}
	export, err := c.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	h := &holder{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	if h.open, err = c.Open(ctx, export, "held", nfs4.OpenFlags{Create: true, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(h.done)
		for i := 0; ; {
			select {
			case <-h.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			_, err := h.open.Write(wctx, uint64(i*recordSize), holderRecord(i), nfsv4.FILE_SYNC4)
			cancel()
			h.mu.Lock()
			if err != nil {
				h.errs = append(h.errs, err)
			} else {
				i++
				h.n = i
				h.acks = append(h.acks, time.Now())
			}
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { h.close(); _ = c.Close() })
	return h
}

func (h *holder) close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// longestPause is the longest time between two acknowledged records after since.
func (h *holder) longestPause(since time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	var longest time.Duration
	prev := since
	for _, at := range h.acks {
		if at.Before(since) {
			continue
		}
		longest = max(longest, at.Sub(prev))
		prev = at
	}
	return longest
}

func (h *holder) acked() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// check reads the file back through the same open: every acknowledged record in place.
func (h *holder) check(t testing.TB, ctx context.Context) {
	t.Helper()
	h.mu.Lock()
	n, errs := h.n, h.errs
	h.mu.Unlock()
	if len(errs) > 0 {
		t.Errorf("the application saw %d write errors, first %v", len(errs), errs[0])
	}
	data, err := h.open.ReadAll(ctx)
	if err != nil {
		t.Fatalf("reading the held file back: %v", err)
	}
	for i := range n {
		if got := data[min(len(data), i*recordSize):min(len(data), (i+1)*recordSize)]; string(got) != string(holderRecord(i)) {
			t.Fatalf("record %d of %d acknowledged: %q", i, n, got)
		}
	}
	t.Logf("held open: %d records acknowledged and read back, reclaimed %d times", n, h.open.Reclaims())
}

// writer writes one small file after another through addr, a volume's Service address, with
// libnfs (each write a fresh connection, as a new consumer would make), and keeps the names
// the server acknowledged.
type writer struct {
	addr, dir string
	mu        sync.Mutex
	acked     []string
	failures  int
	stop      chan struct{}
	done      chan struct{}
}

func nfsURL(addr, path string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf("nfs://%s%s?version=4&nfsport=%s", host, path, port)
}

func startWriter(t *testing.T, addr string) *writer {
	w := &writer{addr: addr, dir: t.TempDir(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			name := fmt.Sprintf("rec-%05d", i)
			src := filepath.Join(w.dir, name)
			if err := os.WriteFile(src, []byte(name), 0o644); err != nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := exec.CommandContext(ctx, "nfs-cp", src, nfsURL(addr, "/export/"+name)).Run()
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, name)
			} else {
				w.failures++
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *writer) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *writer) ackedNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acked)
}

// waitProgress waits until the writer had n more writes acknowledged.
func (w *writer) waitProgress(t *testing.T, ctx context.Context, n int, after string) {
	t.Helper()
	start := len(w.ackedNames())
	fixture.WaitFor(t, ctx, 90*time.Second, "writes acknowledged again after "+after, func() error {
		if got := len(w.ackedNames()) - start; got < n {
			return fmt.Errorf("%d of %d writes acknowledged", got, n)
		}
		return nil
	})
}

// verify lists the export through the Service address: every acknowledged write is there.
func (w *writer) verify(t *testing.T, ctx context.Context, after string) {
	t.Helper()
	acked := w.ackedNames()
	fixture.WaitFor(t, ctx, 30*time.Second, "every acknowledged write readable after "+after, func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, "nfs-ls", nfsURL(w.addr, "/export")).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nfs-ls: %w: %s", err, out)
		}
		have := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 0 {
				have[f[len(f)-1]] = true
			}
		}
		for _, n := range acked {
			if !have[n] {
				return fmt.Errorf("acknowledged %s missing (of %d)", n, len(acked))
			}
		}
		return nil
	})
}

// warningEvent waits for an Event of reason about the object named name in ns.
func warningEvent(t *testing.T, ctx context.Context, ns, name, reason string) {
	t.Helper()
	fixture.WaitFor(t, ctx, 60*time.Second, "Event "+reason+" on "+ns+"/"+name, func() error {
		evs, err := plane.Client().CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == reason {
				return nil
			}
			seen = append(seen, e.Reason)
		}
		return fmt.Errorf("events so far: %v", seen)
	})
}

func degraded(ctx context.Context, c client.Client, key client.ObjectKey) (*swv1.SharedVolume, *metav1.Condition, error) {
	sv := &swv1.SharedVolume{}
	if err := c.Get(ctx, key, sv); err != nil {
		return nil, nil, err
	}
	return sv, meta.FindStatusCondition(sv.Status.Conditions, swv1.ConditionDegraded), nil
}

// stack is one volume under a controller and a kubelet stand-in in namespace ns.
type stack struct {
	c      client.Client
	runner *serverrunner.Runner
	opts   *provisioner.Options
	ctl    *fixture.Controller
}

func newStack(t testing.TB, ctx context.Context, ns string) *stack {
	t.Helper()
	s := &stack{}
	var err error
	if s.c, err = fixture.NewClient(plane); err != nil {
		t.Fatal(err)
	}
	s.opts = fixture.ControllerOptions(plane)
	s.opts.LeaderElect = false
	bg := context.WithoutCancel(ctx)
	s.ctl = fixture.StartController(bg, s.opts)
	t.Cleanup(func() {
		if s.ctl != nil {
			if err := s.ctl.Stop(); err != nil {
				t.Errorf("controller: %v", err)
			}
		}
	})
	s.runner, err = serverrunner.Start(bg, serverrunner.Config{
		Client: plane.Client(), Binary: binary, Namespace: fixture.SystemNamespace, WorkDir: t.TempDir(),
		Kubeconfig: plane.Kubeconfig(),
		// libnfs, the writer, speaks NFSv4.0 only; short lease and grace keep restarts quick.
		ExtraArgs: []string{"--nfs-minor-versions=0,1,2", "--lease=5s", "--grace=5s"},
		Logf:      t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.runner.Stop)
	if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) waitReady(t testing.TB, ctx context.Context, key client.ObjectKey) *swv1.SharedVolume {
	t.Helper()
	sv := &swv1.SharedVolume{}
	fixture.WaitFor(t, ctx, 90*time.Second, "volume "+key.String()+" Ready", func() error {
		if err := s.c.Get(ctx, key, sv); err != nil {
			return err
		}
		claim := &corev1.PersistentVolumeClaim{}
		if err := s.c.Get(ctx, key, claim); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady || claim.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %s, claim %s, conditions %+v", sv.Status.Phase, claim.Status.Phase, sv.Status.Conditions)
		}
		return nil
	})
	return sv
}

// recreate deletes obj (stripping finalizers when strip is set) and creates it again as it was.
func recreateLater(t *testing.T, ctx context.Context, c client.Client, obj client.Object) func() {
	t.Helper()
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	saved := obj.DeepCopyObject().(client.Object)
	if err := c.Delete(ctx, obj); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		saved.SetResourceVersion("")
		saved.SetUID("")
		saved.SetCreationTimestamp(metav1.Time{})
		saved.SetManagedFields(nil)
		if err := c.Create(ctx, saved); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOperatorMistakesKeepData deletes, in turn, each object a live volume owns or depends on
// (managed class, backing class, Service, EndpointSlice, server pod, Lease, SharedVolume, the
// controller itself) while a real NFS client writes through the volume's Service address. After
// each, every acknowledged write is still readable through the same Service IP, the writer
// carries on, and an Event says what happened; nothing of the data is released.
func TestOperatorMistakesKeepData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	s := newStack(t, ctx, "mistakes")
	claim := fixture.Claim("mistakes", "shared")
	if err := s.c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(claim)
	sv := s.waitReady(t, ctx, key)
	ip, uid := sv.Status.ServiceIP, string(claim.UID)
	name := swv1.ObjectName(uid)
	addr, err := s.runner.ServiceAddress(ip)
	if err != nil {
		t.Fatal(err)
	}
	w := startWriter(t, addr)
	w.waitProgress(t, ctx, 5, "start")
	h := startHolder(t, ctx, addr)

	// still checks the data and the address survived.
	still := func(after string) {
		t.Helper()
		w.waitProgress(t, ctx, 3, after)
		n := h.acked()
		fixture.WaitFor(t, ctx, 90*time.Second, "the held open writing again after "+after, func() error {
			if h.acked() < n+3 {
				return fmt.Errorf("%d records since", h.acked()-n)
			}
			return nil
		})
		w.verify(t, ctx, after)
		backing, pv := &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolume{}
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: name}, backing); err != nil {
			t.Fatalf("after %s: backing claim: %v", after, err)
		}
		if err := s.c.Get(ctx, client.ObjectKey{Name: provisioner.PVName(uid)}, pv); err != nil || pv.Spec.NFS == nil || pv.Spec.NFS.Server != ip {
			t.Fatalf("after %s: PV %+v: %v", after, pv.Spec.NFS, err)
		}
		claim := &corev1.PersistentVolumeClaim{}
		if err := s.c.Get(ctx, key, claim); err != nil || claim.Status.Phase != corev1.ClaimBound {
			t.Fatalf("after %s: claim %s: %v", after, claim.Status.Phase, err)
		}
	}
	waitDegraded := func(reason string) {
		t.Helper()
		fixture.WaitFor(t, ctx, 60*time.Second, "Degraded "+reason, func() error {
			sv, c, err := degraded(ctx, s.c, key)
			if err != nil {
				return err
			}
			if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Reason, reason) {
				return fmt.Errorf("Degraded %+v", c)
			}
			if sv.Status.Phase != swv1.PhaseReady || sv.Status.ServiceIP != ip {
				return fmt.Errorf("phase %s at %s while degraded", sv.Status.Phase, sv.Status.ServiceIP)
			}
			return nil
		})
	}
	waitHealthy := func() {
		t.Helper()
		fixture.WaitFor(t, ctx, 60*time.Second, "not Degraded", func() error {
			_, c, err := degraded(ctx, s.c, key)
			if err != nil {
				return err
			}
			if c == nil || c.Status != metav1.ConditionFalse {
				return fmt.Errorf("Degraded %+v", c)
			}
			return nil
		})
	}

	t.Run("managed class", func(t *testing.T) {
		restore := recreateLater(t, ctx, s.c, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: fixture.ManagedClass}})
		waitDegraded(provisioner.ReasonManagedClassMissing)
		warningEvent(t, ctx, key.Namespace, key.Name, provisioner.ReasonManagedClassMissing)
		still("the managed class was deleted")
		restore()
		waitHealthy()
		warningEvent(t, ctx, key.Namespace, key.Name, provisioner.ReasonManagedClassBack)
	})
	t.Run("backing class", func(t *testing.T) {
		restore := recreateLater(t, ctx, s.c, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: fixture.BackingClass}})
		waitDegraded(provisioner.ReasonBackingClassMissing)
		warningEvent(t, ctx, key.Namespace, key.Name, provisioner.ReasonBackingClassMissing)
		still("the backing class was deleted")
		restore()
		waitHealthy()
	})
	t.Run("service", func(t *testing.T) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}}
		if err := s.c.Delete(ctx, svc); err != nil {
			t.Fatal(err)
		}
		waitDegraded(provisioner.ReasonObjectDeleting)
		warningEvent(t, ctx, key.Namespace, key.Name, provisioner.ReasonObjectDeleting)
		still("the Service was deleted (held by its finalizer)")
		// An operator strips the finalizer: the Service goes, and comes back at the same address.
		if err := s.c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			t.Fatal(err)
		}
		oldUID := svc.UID
		svc.Finalizers = nil
		if err := s.c.Update(ctx, svc); err != nil {
			t.Fatal(err)
		}
		fixture.WaitFor(t, ctx, 60*time.Second, "Service recreated at "+ip, func() error {
			got := &corev1.Service{}
			if err := s.c.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil {
				return err
			}
			if got.UID == oldUID || got.Spec.ClusterIP != ip {
				return fmt.Errorf("service %s at %s", got.UID, got.Spec.ClusterIP)
			}
			return nil
		})
		waitHealthy()
		still("the Service's finalizer was stripped")
	})
	t.Run("endpoint slice", func(t *testing.T) {
		slices := &discoveryv1.EndpointSliceList{}
		if err := s.c.List(ctx, slices, client.InNamespace(fixture.SystemNamespace), client.MatchingLabels{discoveryv1.LabelServiceName: name}); err != nil || len(slices.Items) == 0 {
			t.Fatalf("endpoint slices of %s: %d, %v", name, len(slices.Items), err)
		}
		for i := range slices.Items {
			if err := s.c.Delete(ctx, &slices.Items[i]); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
		still("the EndpointSlice was deleted")
	})
	t.Run("server pod", func(t *testing.T) {
		pod := &corev1.Pod{}
		if err := s.c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: name}, pod); err != nil {
			t.Fatal(err)
		}
		if err := s.c.Delete(ctx, pod); err != nil {
			t.Fatal(err)
		}
		fixture.WaitFor(t, ctx, 60*time.Second, "a new server pod", func() error {
			got := &corev1.Pod{}
			if err := s.c.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
				return err
			}
			if got.UID == pod.UID {
				return fmt.Errorf("still the old pod")
			}
			return nil
		})
		warningEvent(t, ctx, key.Namespace, key.Name, provisioner.ReasonServerStarting)
		still("the server pod was deleted")
	})
	t.Run("lease", func(t *testing.T) {
		before := &swv1.SharedVolume{}
		if err := s.c.Get(ctx, key, before); err != nil {
			t.Fatal(err)
		}
		lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}}
		if err := s.c.Delete(ctx, lease); err != nil {
			t.Fatal(err)
		}
		fixture.WaitFor(t, ctx, 30*time.Second, "lease back", func() error {
			return s.c.Get(ctx, client.ObjectKeyFromObject(lease), lease)
		})
		still("the Lease was deleted")
		after := &swv1.SharedVolume{}
		if err := s.c.Get(ctx, key, after); err != nil {
			t.Fatal(err)
		}
		if after.Status.FailoverCount != before.Status.FailoverCount {
			t.Errorf("a deleted Lease caused a failover (%d -> %d)", before.Status.FailoverCount, after.Status.FailoverCount)
		}
	})
	t.Run("shared volume", func(t *testing.T) {
		old := &swv1.SharedVolume{}
		if err := s.c.Get(ctx, key, old); err != nil {
			t.Fatal(err)
		}
		if err := s.c.Delete(ctx, old); err != nil {
			t.Fatal(err)
		}
		warningEvent(t, ctx, key.Namespace, key.Name, provisioner.ReasonViewRecreated)
		fixture.WaitFor(t, ctx, 30*time.Second, "SharedVolume recreated", func() error {
			sv := &swv1.SharedVolume{}
			if err := s.c.Get(ctx, key, sv); err != nil {
				return err
			}
			if sv.UID == old.UID || sv.DeletionTimestamp != nil || sv.Status.Phase != swv1.PhaseReady {
				return fmt.Errorf("SharedVolume %s phase %s deleting %v", sv.UID, sv.Status.Phase, sv.DeletionTimestamp != nil)
			}
			return nil
		})
		still("the SharedVolume was deleted")
	})
	t.Run("controller", func(t *testing.T) {
		if err := s.ctl.Stop(); err != nil {
			t.Fatal(err)
		}
		s.ctl = nil
		still("the controller stopped")
		s.ctl = fixture.StartController(context.WithoutCancel(ctx), s.opts)
		still("the controller restarted")
	})
	if t.Failed() {
		return
	}
	w.close()
	w.verify(t, ctx, "all of it")
	h.close()
	h.check(t, ctx)
	t.Logf("%d writes acknowledged, %d refused or timed out while servers restarted", len(w.ackedNames()), w.failures)

	// Only the user's own delete releases the data.
	if err := s.c.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 90*time.Second, "volume released", func() error {
		for _, obj := range []client.Object{
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}},
			&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: provisioner.PVName(uid)}},
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: fixture.SystemNamespace, Name: name}},
			&swv1.SharedVolume{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}},
		} {
			if err := s.c.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%T %s still there (%v)", obj, obj.GetName(), err)
			}
		}
		return nil
	})
}
