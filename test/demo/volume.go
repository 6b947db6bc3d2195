package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

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
	dataPlane := os.Geteuid() == 0 && haveTools("ganesha.nfsd", "nfs-cp", "nfs-cat", "nfs-ls")
	var runner *serverrunner.Runner
	if dataPlane {
		runner, err = serverrunner.Start(ctx, serverrunner.Config{
			Client: c.Client(), Binary: self, Namespace: fixture.SystemNamespace,
			WorkDir: filepath.Join(c.WorkDir(), "dataplane"),
			// libnfs, the demo's NFS client, speaks NFSv4.0 only; kernel clients use 4.1.
			ExtraArgs: []string{"--nfs-minor-versions=0,1,2"},
			Logf:      func(f string, a ...any) { say("  kubelet: "+f, a...) },
			// Servers hold their volume's Lease (self-fencing) with the admin identity here.
			Kubeconfig: c.Kubeconfig(),
		})
		if err != nil {
			return err
		}
		onStop(runner.Stop)
		say("playing the kubelet for NFS server pods: each runs `sharewarden nfs-server` with real nfs-ganesha on a loopback address")
	} else {
		say("NOTE: no root or no nfs-ganesha/libnfs-utils here (make demo installs them): control plane only, no NFS data path")
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
	if err := moveData(ctx, ep, say); err != nil {
		return err
	}
	return failover(ctx, c, cl, runner, sv, ep, say)
}

// failover kills the server's node the way a power loss and a network partition would, and
// follows the volume to its new node; the client reads what it wrote and carries on.
func failover(ctx context.Context, c *cluster.Cluster, cl client.Client, runner *serverrunner.Runner, sv *swv1.SharedVolume, oldEP serverrunner.Endpoint, say func(string, ...any)) error {
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
				say("  +%4.1fs  replacement server running on %s (%s:%d)", time.Since(t0).Seconds(), p.Spec.NodeName, e.Host, e.Port)
			}
		}
		return ep.Host != "" && oldStopped && phase == swv1.PhaseReady, nil
	})
	if err != nil {
		return fmt.Errorf("failover did not complete: %w", err)
	}
	out, err := retry(ctx, "nfs-cat", ep.URL("/export/hello.txt"))
	if err != nil {
		return fmt.Errorf("reading after the failover: %w\n%s", err, out)
	}
	say("  +%4.1fs  reader (same Service IP %s): %q is still there", time.Since(t0).Seconds(), sv.Status.ServiceIP, strings.TrimSpace(out))
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := exec.CommandContext(lctx, "nfs-ls", oldEP.URL("/export")).Run(); err == nil {
		return fmt.Errorf("the old server still serves after the failover")
	}
	say("  the old server on %s refuses clients; %s stays fenced until it is Ready again for the settle period", node, node)
	return printEvents(ctx, c, sv.Namespace, sv.Spec.ClaimName, say)
}

// moveData writes a file through NFS as a consumer on one node would, and reads it back as
// another, retrying while the server finishes its grace period.
func moveData(ctx context.Context, ep serverrunner.Endpoint, say func(string, ...any)) error {
	src, err := os.CreateTemp("", "sharewarden-demo-")
	if err != nil {
		return fmt.Errorf("temp file: %w", err)
	}
	defer os.Remove(src.Name())
	msg := fmt.Sprintf("hello from a writer pod, %s\n", time.Now().Format(time.RFC3339))
	if _, err := src.WriteString(msg); err != nil {
		return fmt.Errorf("temp file: %w", err)
	}
	_ = src.Close()
	say("writer: nfs-cp %s %s", src.Name(), ep.URL("/export/hello.txt"))
	if out, err := retry(ctx, "nfs-cp", src.Name(), ep.URL("/export/hello.txt")); err != nil {
		return fmt.Errorf("writing through NFS: %w\n%s", err, out)
	}
	out, err := retry(ctx, "nfs-cat", ep.URL("/export/hello.txt"))
	if err != nil {
		return fmt.Errorf("reading through NFS: %w\n%s", err, out)
	}
	say("reader: nfs-cat %s -> %q", ep.URL("/export/hello.txt"), strings.TrimSpace(out))
	if out != msg {
		return fmt.Errorf("reader saw %q, writer wrote %q", out, msg)
	}
	say("the file is on the backing volume too: %s", filepath.Join(ep.DataDir, "data", "hello.txt"))
	return nil
}

func retry(ctx context.Context, tool string, args ...string) (string, error) {
	var out []byte
	var err error
	for range 60 {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		out, err = exec.CommandContext(cctx, tool, args...).CombinedOutput()
		cancel()
		if err == nil {
			return string(out), nil
		}
		select {
		case <-ctx.Done():
			return string(out), ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return string(out), err
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
