package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	ctrlzap "sigs.k8s.io/controller-runtime/pkg/log/zap"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/nfs4"
	"github.com/sharewarden/sharewarden/test/serverrunner"
	"github.com/sharewarden/sharewarden/test/webhookrun"
)

// sharedVolumeWalkthrough installs ShareWarden on the plane, provisions an RWX claim and
// moves data through its NFS server with a real NFS client. What it starts keeps running until
// the returned stop is called.
func sharedVolumeWalkthrough(ctx context.Context, c *cluster.Cluster, say func(string, ...any)) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	return stop, walkthrough(ctx, c, say, func(f func()) { stops = append(stops, f) })
}

func walkthrough(ctx context.Context, c *cluster.Cluster, say func(string, ...any), onStop func(func())) error {
	say("installing ShareWarden: CRDs, namespace %s, classes %s (ReadWriteOnce disks attachable from any node, like cloud disks; opted in) and %s (managed)",
		fixture.SystemNamespace, fixture.BackingClass, fixture.ManagedClass)
	if err := fixture.InstallCRDs(ctx, c); err != nil {
		return err
	}
	if err := fixture.SetupStorage(ctx, c, fixture.Storage{PVsPerNode: 2, Network: true}); err != nil {
		return err
	}
	whLog := ctrlzap.New(ctrlzap.WriteTo(io.Discard))
	wh, err := webhookrun.Start(ctx, c, webhookrun.Options{Logger: &whLog})
	if err != nil {
		return fmt.Errorf("starting webhook: %w", err)
	}
	onStop(func() { _ = wh.Stop() })
	say("webhook running on 127.0.0.1 and registered (MutatingWebhookConfiguration %s)", webhookrun.DefaultConfigurationName)

	logPath := filepath.Join(c.WorkDir(), "sharewarden-controller.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("controller log: %w", err)
	}
	onStop(func() { _ = logFile.Close() })
	ctl := fixture.StartController(log.IntoContext(ctx, ctrlzap.New(ctrlzap.WriteTo(logFile))), fixture.ControllerOptions(c))
	onStop(func() { _ = ctl.Stop() })
	say("controller running in-process (leader election on), log: %s", logPath)

	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating the sharewarden binary: %w", err)
	}
	dataPlane := os.Geteuid() == 0 && haveTools("ganesha.nfsd", "losetup", "mkfs.ext4")
	var runner *serverrunner.Runner
	if dataPlane {
		runner, err = serverrunner.Start(ctx, serverrunner.Config{
			Client: c.Client(), Binary: self, Namespace: fixture.SystemNamespace,
			WorkDir: filepath.Join(c.WorkDir(), "dataplane"),
			Logf:    func(f string, a ...any) { say("  kubelet: "+f, a...) },
			// Servers hold their volume's Lease (self-fencing) with the admin identity here.
			Kubeconfig: c.Kubeconfig(),
		})
		if err != nil {
			return err
		}
		onStop(runner.Stop)
		say("playing the kubelet for NFS server pods: each runs `sharewarden nfs-server` with real nfs-ganesha on a loopback address, its backing disk an ext4 image on a loop device")
	} else {
		say("NOTE: no root or no nfs-ganesha here (make demo installs it): control plane only, no NFS data path")
	}

	cl, err := fixture.NewClient(c)
	if err != nil {
		return err
	}
	const ns, name = "demo", "shared"
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: ptr.To(fixture.BackingClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
		},
	}
	say("creating RWX claim %s/%s (5Gi) on %s, a ReadWriteOnce class opted in with %s=%s", ns, name, fixture.BackingClass, swv1.AnnotationRWX, swv1.RWXModeNFS)
	if err := cl.Create(ctx, claim); err != nil {
		return fmt.Errorf("creating claim: %w", err)
	}
	say("  the webhook rewrote it: storageClassName %s, %s=%s", ptr.Deref(claim.Spec.StorageClassName, ""),
		swv1.AnnotationBackingStorageClass, claim.Annotations[swv1.AnnotationBackingStorageClass])
	if ptr.Deref(claim.Spec.StorageClassName, "") != fixture.ManagedClass {
		return fmt.Errorf("claim was not rewritten to %s", fixture.ManagedClass)
	}
	t0 := time.Now()
	sv := &swv1.SharedVolume{}
	lastPhase := swv1.Phase("")
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(claim), sv); err != nil {
			return false, nil //nolint:nilerr // not created yet
		}
		if sv.Status.Phase != lastPhase {
			say("  SharedVolume %s/%s: %s", ns, name, sv.Status.Phase)
			lastPhase = sv.Status.Phase
		}
		return sv.Status.Phase == swv1.PhaseReady, nil
	})
	if err != nil {
		return fmt.Errorf("volume did not become Ready: %w", err)
	}
	say("volume Ready in %s: server %s on %s, Service IP %s, PV %s",
		time.Since(t0).Round(time.Millisecond), sv.Status.Server.Pod.Name, sv.Status.Server.NodeName, sv.Status.ServiceIP, sv.Status.VolumeName)
	if err := printEvents(ctx, c, ns, name, say); err != nil {
		return err
	}
	if runner == nil {
		return nil
	}
	var ep serverrunner.Endpoint
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		var ok bool
		ep, ok = runner.Endpoint(sv.Status.Server.Pod.Name)
		return ok, nil
	}); err != nil {
		return fmt.Errorf("server agent not running: %w", err)
	}
	app, err := moveData(ctx, ep, say)
	if err != nil {
		return err
	}
	defer func() { _ = app.c.Close() }()
	return failover(ctx, c, cl, runner, sv, ep, app, say)
}

// failover kills the server's node the way a power loss and a network partition would, and
// follows the volume to its new node; the client reads what it wrote and carries on.
func failover(ctx context.Context, c *cluster.Cluster, cl client.Client, runner *serverrunner.Runner, sv *swv1.SharedVolume, oldEP serverrunner.Endpoint, app *app, say func(string, ...any)) error {
	node := sv.Status.Server.NodeName
	old := &corev1.Pod{}
	if err := cl.Get(ctx, client.ObjectKey{Namespace: sv.Status.Server.Pod.Namespace, Name: sv.Status.Server.Pod.Name}, old); err != nil {
		return fmt.Errorf("getting server pod: %w", err)
	}
	say("killing node %s: its kwok (kubelet) stops, and its NFS server is cut off the apiserver while its NFS port stays up", node)
	t0 := time.Now()
	runner.PartitionNode(node)
	if err := c.FailNode(node); err != nil {
		return err
	}
	oldStopped := false
	phase := sv.Status.Phase
	var ep serverrunner.Endpoint
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if !oldStopped && !runner.Running(old.UID) {
			oldStopped = true
			say("  +%4.1fs  old server stopped serving by itself: it could not renew its lease (self-fencing)", time.Since(t0).Seconds())
		}
		cur := &swv1.SharedVolume{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(sv), cur); err == nil && cur.Status.Phase != phase {
			phase = cur.Status.Phase
			say("  +%4.1fs  SharedVolume %s (failovers: %d, fenced nodes: %v, server: %s)", time.Since(t0).Seconds(), phase,
				cur.Status.FailoverCount, cur.Status.FencedNodes, cur.Status.Server.NodeName)
		}
		p := &corev1.Pod{}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(old), p); err == nil && p.UID != old.UID {
			if e, ok := runner.EndpointByUID(p.UID); ok && ep.Host == "" {
				ep = e
				app.cur.Store(&e)
				say("  +%4.1fs  replacement server running on %s (%s:%d), its disk moved from %s to %s", time.Since(t0).Seconds(), p.Spec.NodeName, e.Host, e.Port, oldEP.Device, e.Device)
			}
		}
		return ep.Host != "" && oldStopped && phase == swv1.PhaseReady, nil
	})
	if err != nil {
		return fmt.Errorf("failover did not complete: %w", err)
	}
	// The writer kept its file handle and its open across the move: its client reconnects,
	// finds its session and client ID gone, reclaims the open and carries on.
	attr, err := app.c.GetAttr(ctx, app.o.FH())
	if err != nil {
		return fmt.Errorf("the file handle from before the failover: %w", err)
	}
	say("  +%4.1fs  writer: GETATTR of the file handle taken before the failover: fileid %d, %d bytes (no ESTALE)", time.Since(t0).Seconds(), attr.FileID, attr.Size)
	more := "and again after the failover\n"
	if _, err := app.o.Write(ctx, attr.Size, []byte(more), nfsv4.FILE_SYNC4); err != nil {
		return fmt.Errorf("writing through the reclaimed open: %w", err)
	}
	got, err := app.o.ReadAll(ctx)
	if err != nil {
		return fmt.Errorf("reading after the failover: %w", err)
	}
	rs := app.c.Recoveries()
	say("  +%4.1fs  writer: the open was reclaimed (recoveries: %d, open reclaimed %d times) and writes carry on; the file now reads %q", time.Since(t0).Seconds(), len(rs), app.o.Reclaims(), strings.TrimSpace(string(got)))
	if !strings.HasSuffix(string(got), more) {
		return fmt.Errorf("read back %q after the failover", got)
	}
	if err := serves(ctx, oldEP); err == nil {
		return fmt.Errorf("the old server still serves after the failover")
	}
	say("  the old server on %s refuses clients; %s stays fenced until it is Ready again for the settle period", node, node)
	return printEvents(ctx, c, sv.Namespace, sv.Spec.ClaimName, say)
}

// app is the demo's writer: an NFSv4.2 client that holds a file open across the failover, as
// an application on a kernel mount of the Service IP would; cur is the server it reaches (the
// Service IP's endpoint).
type app struct {
	c   *nfs4.Client
	o   *nfs4.Open
	cur atomic.Pointer[serverrunner.Endpoint]
}

// moveData writes a file through NFS as a consumer on one node would, and reads it back as
// another (a second client), both on the shipped NFSv4.1+ server.
func moveData(ctx context.Context, ep serverrunner.Endpoint, say func(string, ...any)) (*app, error) {
	a := &app{}
	a.cur.Store(&ep)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var err error
	a.c, err = nfs4.Dial(ctx, nfs4.Config{Owner: "demo-writer", MinorVersion: 2, Recover: true,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", a.cur.Load().Addr())
		}})
	if err != nil {
		return nil, fmt.Errorf("NFSv4.2 writer: %w", err)
	}
	msg := fmt.Sprintf("hello from a writer pod, %s\n", time.Now().Format(time.RFC3339))
	export, err := a.c.LookupPath(ctx, "/export")
	if err == nil {
		a.o, err = a.c.Open(ctx, export, "hello.txt", nfs4.OpenFlags{Create: true, Mode: 0o644})
	}
	if err == nil {
		_, err = a.o.Write(ctx, 0, []byte(msg), nfsv4.FILE_SYNC4)
	}
	if err != nil {
		_ = a.c.Close()
		return nil, fmt.Errorf("writing through NFS: %w", err)
	}
	say("writer (NFSv4.2 client, session, lease %s): opened /export/hello.txt, handle %x, wrote %d bytes FILE_SYNC", a.c.Lease(), a.o.FH(), len(msg))
	r, err := nfs4.Dial(ctx, nfs4.Config{Addr: ep.Addr(), Owner: "demo-reader", MinorVersion: 1})
	if err != nil {
		_ = a.c.Close()
		return nil, fmt.Errorf("NFSv4.1 reader: %w", err)
	}
	defer func() { _ = r.Close() }()
	var got []byte
	fh, err := r.LookupPath(ctx, "/export/hello.txt")
	if err == nil {
		var o *nfs4.Open
		if o, err = r.Open(ctx, export, "hello.txt", nfs4.OpenFlags{ReadOnly: true}); err == nil {
			got, err = o.ReadAll(ctx)
		}
	}
	if err != nil {
		_ = a.c.Close()
		return nil, fmt.Errorf("reading through NFS: %w", err)
	}
	say("reader (NFSv4.1 client): handle %x, read %q", fh, strings.TrimSpace(string(got)))
	if string(got) != msg {
		_ = a.c.Close()
		return nil, fmt.Errorf("reader saw %q, writer wrote %q", got, msg)
	}
	say("the file is on the backing disk too (%s, mounted at %s): %s", ep.Device, ep.DataDir, filepath.Join(ep.DataDir, "data", "hello.txt"))
	return a, nil
}

// serves tells whether the server at ep still answers a new client.
func serves(ctx context.Context, ep serverrunner.Endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := nfs4.Dial(ctx, nfs4.Config{Addr: ep.Addr(), Owner: "demo-check", CallTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	c.Abandon()
	return nil
}

func printEvents(ctx context.Context, c *cluster.Cluster, ns, name string, say func(string, ...any)) error {
	evs, err := c.Client().EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing events: %w", err)
	}
	items := evs.Items
	sort.Slice(items, func(i, j int) bool { return items[i].EventTime.Before(&items[j].EventTime) })
	say("events on the claim (kubectl get events -n %s --field-selector involvedObject.name=%s):", ns, name)
	for _, e := range items {
		if e.Regarding.Name == name && e.Regarding.Kind == "PersistentVolumeClaim" {
			say("  %-8s %-20s %s", e.Type, e.Reason, e.Note)
		}
	}
	return nil
}

func haveTools(tools ...string) bool {
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			return false
		}
	}
	return true
}
