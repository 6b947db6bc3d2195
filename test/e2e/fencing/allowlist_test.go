package fencing_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/nfs4"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

// Nodes of the allowlist test: their InternalIPs are loopback addresses, so an NFS client of
// this process that dials from one stands for that node's kubelet.
var allowNodes = []cluster.NodeSpec{
	{Name: "allow-1", Zone: "zone-a", IP: "127.0.0.21"},
	{Name: "allow-2", Zone: "zone-a", IP: "127.0.0.22"},
	{Name: "allow-3", Zone: "zone-b", IP: "127.0.0.23"},
}

// allowClass is a managed class with the allowlist on (the fixture's has it off).
const allowClass = "sharewarden-allowlist"

// dialFrom connects to ep from the local address ip, as a kubelet mounts from its node's address.
func dialFrom(ctx context.Context, ep serverrunner.Endpoint, ip, owner string) (*nfs4.Client, error) {
	return nfs4.Dial(ctx, nfs4.Config{Owner: owner, MinorVersion: 1, CallTimeout: 3 * time.Second, OpTimeout: 10 * time.Second,
		Dial: nfs4.DialFrom(ip, ep.Addr())})
}

// mountAndWrite is what a new mount from ip does: look the export up, create a file, write.
func mountAndWrite(ep serverrunner.Endpoint, ip, owner string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialFrom(ctx, ep, ip, owner)
	if err != nil {
		return err
	}
	defer c.Abandon()
	export, err := c.LookupPath(ctx, "/export")
	if err != nil {
		return err
	}
	o, err := c.Open(ctx, export, "from-"+ip, nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		return err
	}
	_, err = o.Write(ctx, 0, []byte(owner), nfsv4.FILE_SYNC4)
	return err
}

// refused tells whether err is the server turning the client away (nfs4.Refused), or answering
// NFS4ERR_WRONGSEC, which a server on the plane may answer a client no export admits.
func refused(err error) bool {
	var op *nfs4.OpError
	return nfs4.Refused(err) || errors.As(err, &op) && op.Status == nfs4.Status(nfsv4.NFS4ERR_WRONGSEC)
}

// steadyWriter writes FILE_SYNC records from one client throughout, and remembers the first error.
type steadyWriter struct {
	open *nfs4.Open
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	n    int
	err  error
}

func startSteadyWriter(t *testing.T, ctx context.Context, ep serverrunner.Endpoint, ip string) *steadyWriter {
	t.Helper()
	c, err := dialFrom(ctx, ep, ip, "steady-writer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Abandon() })
	export, err := c.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	w := &steadyWriter{stop: make(chan struct{}), done: make(chan struct{})}
	if w.open, err = c.Open(ctx, export, "steady", nfs4.OpenFlags{Create: true, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		for i := uint64(0); ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			_, err := w.open.Write(context.Background(), i*8, []byte("record\n\x00"), nfsv4.FILE_SYNC4)
			w.mu.Lock()
			if err != nil {
				w.err = fmt.Errorf("write %d: %w", i, err)
				w.mu.Unlock()
				return
			}
			w.n++
			w.mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return w
}

func (w *steadyWriter) count() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.err
}

// waitMore waits until the writer has had more writes acknowledged than it had, and fails the
// test as soon as one failed.
func (w *steadyWriter) waitMore(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	from, _ := w.count()
	fixture.WaitFor(t, ctx, 30*time.Second, what, func() error {
		n, err := w.count()
		if err != nil {
			t.Fatalf("%s: the allowed client's writer failed: %v", what, err)
		}
		if n < from+10 {
			return fmt.Errorf("%d writes acknowledged, %d before", n, from)
		}
		return nil
	})
}

// TestClientAllowlist: a volume's server admits NFS clients only from the nodes its consumers are
// scheduled on, follows the consumers within seconds, refuses a fenced node's clients at once,
// and never interrupts an allowed client while its list changes.
func TestClientAllowlist(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var add []cluster.NodeSpec
	for _, n := range allowNodes {
		if !slices.Contains(plane.NodeNames(), n.Name) {
			add = append(add, n)
		}
	}
	if err := plane.AddNodes(ctx, add...); err != nil {
		t.Fatal(err)
	}
	c, err := fixture.NewClient(plane)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range allowNodes {
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: n.Name}, node); err != nil {
			t.Fatal(err)
		}
		if got := internalIP(node); got != n.IP {
			t.Fatalf("node %s has InternalIP %q, want %s", n.Name, got, n.IP)
		}
	}
	class := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: allowClass},
		Provisioner: swv1.Provisioner,
		Parameters: map[string]string{swv1.ParameterBackingStorageClass: fixture.BackingClass,
			provisioner.ParamClientAllowlist: provisioner.ClientAllowlistConsumerNodes},
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}
	if err := c.Create(ctx, class); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// A disk of its own, so the suite's pool is left to the other tests.
	disk := fixture.LocalPV("allowlist", 0, "10Gi")
	disk.Name, disk.Spec.NodeAffinity, disk.Spec.Local = "net-allowlist-0", nil, nil
	disk.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: "disk.example.com", VolumeHandle: disk.Name}
	if err := c.Create(ctx, disk); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	opts := fixture.ControllerOptions(plane)
	opts.LeaderElect = false
	// The test fences allow-2 as the NodeFencer does (its label); a long settle keeps the
	// NodeFencer from unfencing it while it is Ready.
	opts.UnfenceSettle = 10 * time.Minute
	opts.EvictFencedConsumers = false
	bg := context.WithoutCancel(ctx)
	ctl := fixture.StartController(bg, opts)
	t.Cleanup(func() {
		if err := ctl.Stop(); err != nil {
			t.Errorf("controller: %v", err)
		}
	})
	runner, err := serverrunner.Start(bg, serverrunner.Config{
		Client: plane.Client(), Binary: binary, Namespace: fixture.SystemNamespace, WorkDir: t.TempDir(),
		Kubeconfig: plane.Kubeconfig(), Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runner.Stop)

	const ns = "allowlist"
	if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: ptr.To(allowClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		// The consumers first: pvc-protection holds a claim that pods still mount.
		if err := c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0)); err != nil {
			t.Errorf("deleting consumers: %v", err)
		}
		if err := c.Delete(ctx, claim); err != nil {
			t.Errorf("deleting claim: %v", err)
			return
		}
		fixture.WaitFor(t, ctx, 60*time.Second, "volume removed", func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(claim), &swv1.SharedVolume{}); err == nil {
				return errors.New("SharedVolume still there")
			}
			return nil
		})
	})
	consumer := func(name, node string) {
		t.Helper()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.PodSpec{
				NodeName:   node, // bound, as the scheduler would
				Containers: []corev1.Container{{Name: "app", Image: "app"}},
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name}}}},
			},
		}
		if err := c.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	consumer("app-1", "allow-1")

	sv := &swv1.SharedVolume{}
	fixture.WaitFor(t, ctx, 90*time.Second, "volume Ready", func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady {
			return fmt.Errorf("phase %s", sv.Status.Phase)
		}
		return nil
	})
	pod := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: sv.Status.Server.Pod.Name}, pod); err != nil {
		t.Fatal(err)
	}
	var ep serverrunner.Endpoint
	fixture.WaitFor(t, ctx, 30*time.Second, "server running", func() error {
		var ok bool
		if ep, ok = runner.EndpointByUID(pod.UID); !ok {
			return errors.New("no agent yet")
		}
		return nil
	})
	wantAccess := func(what string, clients ...string) {
		t.Helper()
		fixture.WaitFor(t, ctx, 30*time.Second, what, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
				return err
			}
			if a := sv.Status.Access; a == nil || !a.Allowlist || !slices.Equal(a.Clients, clients) {
				return fmt.Errorf("status.access %+v, want clients %v", a, clients)
			}
			return nil
		})
	}
	served := func(what, ip string) {
		t.Helper()
		fixture.WaitFor(t, ctx, 30*time.Second, what, func() error { return mountAndWrite(ep, ip, what) })
	}
	turnedAway := func(what, ip string) {
		t.Helper()
		fixture.WaitFor(t, ctx, 30*time.Second, what, func() error {
			err := mountAndWrite(ep, ip, what)
			if !refused(err) {
				return fmt.Errorf("not refused: %v", err)
			}
			return nil
		})
	}

	// 1. The consumer's node is served; another node is not.
	wantAccess("allowlist of one consumer on allow-1", "127.0.0.21")
	served("a client of allow-1 served", "127.0.0.21")
	turnedAway("a client of allow-2, no consumer there, refused", "127.0.0.22")
	turnedAway("a client of allow-3, no consumer there, refused", "127.0.0.23")

	// An application on allow-1 writes throughout everything below.
	w := startSteadyWriter(t, ctx, ep, "127.0.0.21")
	w.waitMore(t, ctx, "the allowed client writes")

	// 2. A consumer scheduled on allow-2: that node is served within seconds.
	consumer("app-2", "allow-2")
	wantAccess("allowlist after a consumer on allow-2", "127.0.0.21", "127.0.0.22")
	served("a client of allow-2 served once a consumer is there", "127.0.0.22")
	w.waitMore(t, ctx, "the allowed client writes on after allow-2 was added")

	// A client of allow-2 that mounted while allowed, holding an open file.
	held, err := dialFrom(ctx, ep, "127.0.0.22", "held-allow-2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(held.Abandon)
	export, err := held.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	heldOpen, err := held.Open(ctx, export, "held", nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := heldOpen.Write(ctx, 0, []byte("before"), nfsv4.FILE_SYNC4); err != nil {
		t.Fatalf("allow-2's client cannot write while allowed: %v", err)
	}

	// 3. allow-2 fenced (the label the NodeFencer puts on a fenced node): its clients are
	// refused, even on the session and open they already have; allow-1 carries on.
	setFenced(t, ctx, c, "allow-2", true)
	t.Cleanup(func() { setFenced(t, context.Background(), c, "allow-2", false) })
	wantAccess("allowlist after allow-2 was fenced", "127.0.0.21")
	turnedAway("a new client of fenced allow-2 refused", "127.0.0.22")
	fixture.WaitFor(t, ctx, 30*time.Second, "the open of allow-2's client refused after the fencing", func() error {
		_, err := heldOpen.Write(ctx, 0, []byte("after"), nfsv4.FILE_SYNC4)
		if !refused(err) {
			return fmt.Errorf("not refused: %v", err)
		}
		return nil
	})
	w.waitMore(t, ctx, "the allowed client writes on after allow-2 was fenced")

	// 4. A consumer on allow-3 comes; then the one on allow-1 goes, and allow-1 is dropped.
	consumer("app-3", "allow-3")
	wantAccess("allowlist after a consumer on allow-3", "127.0.0.21", "127.0.0.23")
	served("a client of allow-3 served", "127.0.0.23")
	w.waitMore(t, ctx, "the allowed client writes on after allow-3 was added")

	close(w.stop)
	<-w.done
	n, werr := w.count()
	if werr != nil {
		t.Fatalf("the allowed client's writes were interrupted by an allowlist change: %v", werr)
	}
	t.Logf("allowed client: %d writes acknowledged, none failed, through 3 allowlist changes", n)

	if err := c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app-1"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	wantAccess("allowlist after allow-1's consumer left", "127.0.0.23")
	turnedAway("a client of allow-1 refused once its consumer left", "127.0.0.21")
}

func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// setFenced puts or takes the NodeFencer's fenced label on a node.
func setFenced(t *testing.T, ctx context.Context, c client.Client, name string, fenced bool) {
	t.Helper()
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(node.DeepCopy())
	if fenced {
		node.Labels[swv1.LabelNodeFenced] = swv1.FencedTrue
	} else {
		delete(node.Labels, swv1.LabelNodeFenced)
	}
	if err := c.Patch(ctx, node, patch); err != nil {
		t.Fatal(err)
	}
}
