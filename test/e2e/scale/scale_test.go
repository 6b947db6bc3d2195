// Package scale_test measures one controller with thousands of volumes on the real control
// plane from test/cluster: its memory, how long a restarted controller takes to reconcile every
// volume again, and what it asks of the apiserver at rest while every server renews its Lease.
// It has no tests, only BenchmarkScale, which starts its own plane.
package scale_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/kubeclient"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

var (
	volumes = flag.Int("scale.volumes", 5000, "volumes on the one controller")
	nodes   = flag.Int("scale.nodes", 50, "kwok nodes (one kwok process plays them all)")
	window  = flag.Duration("scale.window", 30*time.Second, "length of each at-rest measuring window")
	batch   = flag.Int("scale.batch", 500, "volumes created at once during the set-up, each batch once the one before is Ready (keeps kube-controller-manager's PV controller queue short)")
	// The agent renews every 2 s by default (5,000 servers: 2,500 writes/s, more than a 2-core
	// plane serves besides everything else); the benchmark renews 5x slower by default, a rate
	// the plane keeps up with, so that what is measured is the controller's cost per renewal.
	duration = flag.Duration("scale.lease-duration", 30*time.Second, "D of the servers' Leases (the agent's --lease-duration, default 10s)")
	renew    = flag.Duration("scale.renew-interval", 10*time.Second, "R of the servers' Leases (the agent's --lease-renew-interval, default 2s)")
	margin   = flag.Duration("scale.lease-safety-margin", 5*time.Second, "M of the servers' Leases (the agent's --lease-safety-margin, default 3s)")
	baseline = flag.String("scale.baseline", "", "a sharewarden binary of another version: restarted on the same world before this checkout's, for figures side by side (prefixed base-)")
)

// scaleClass is the backing class of the benchmark: statically provisioned disks, bound at once
// to the claim each is pre-bound to (as a CSI driver's provisioner would bind a fresh disk).
const scaleClass = "scale-rwo"

// BenchmarkScale provisions -scale.volumes volumes through the controller (running as its own
// process, so its memory and CPU are its own) and then measures, at rest: the apiserver's and
// the controller's requests per second without server Leases and with every server renewing its
// Lease (the agent's own fencing.Holder, driven without ganesha); how long a restarted
// controller (default flags) takes to reconcile every volume again; and its memory.
func BenchmarkScale(b *testing.B) {
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		b.Skip(err)
	}
	// The renewers' fencing.Holder logs through controller-runtime's logger; quiet, as in the suites.
	logf.SetLogger(logr.Discard())
	ctx, cancel := context.WithTimeout(context.Background(), 170*time.Minute)
	defer cancel()
	n := *volumes
	specs := make([]cluster.NodeSpec, *nodes)
	for i := range specs {
		specs[i] = cluster.NodeSpec{Name: fmt.Sprintf("s%03d", i), Zone: []string{"a", "b"}[i%2], Group: "scale"}
	}
	c, err := cluster.Start(ctx, cluster.Config{
		BinDir: binDir, Nodes: specs,
		SchedulerQPS: 500, SchedulerBurst: 1000,
		ExtraControllerManagerArgs: []string{"--kube-api-qps=500", "--kube-api-burst=1000", "--concurrent-service-endpoint-syncs=10"},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	cfg := c.RESTConfig()
	cfg.QPS = -1 // no client-side limit: the plane sets the pace of the set-up and the renewals
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := fixture.InstallCRDs(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := fixture.SetupStorage(ctx, c, fixture.Storage{PVsPerNode: 1}); err != nil {
		b.Fatal(err)
	}
	_, err = cs.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: scaleClass, Annotations: map[string]string{swv1.AnnotationRWX: swv1.RWXModeNFS}},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingImmediate),
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.CreateNamespace(ctx, "scale", nil); err != nil {
		b.Fatal(err)
	}
	bin, err := cluster.BuildSharewarden(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	logDir := b.TempDir()
	if d := os.Getenv("SHAREWARDEN_SCALE_LOGS"); d != "" {
		logDir = d
	}

	for b.Loop() {
		// 1. Provisioning, with raised client limits: the set-up, not a figure of the goals.
		ctl := startController(b, c, bin, logDir, "controller-1", "--workers=8", "--kube-api-qps=500", "--kube-api-burst=1000")
		t0 := time.Now()
		for from := 0; from < n; from += *batch {
			to := min(from+*batch, n)
			t1 := time.Now()
			createVolumes(ctx, b, cs, from, to)
			fixture.WaitFor(b, ctx, 30*time.Minute, "every volume Ready", func() error {
				m, err := ctl.Scrape(ctx)
				if err != nil {
					return err
				}
				if ready := m.Sum("sharewarden_volumes_ready_total", "")[""]; ready < float64(to) {
					return fmt.Errorf("%.0f of %d Ready", ready, to)
				}
				return nil
			})
			b.Logf("set-up: volumes %d to %d Ready in %s (%.1f volumes/s), controller RSS %.0f MiB",
				from, to-1, time.Since(t1).Round(time.Second), float64(to-from)/time.Since(t1).Seconds(), ctl.RSSMiB())
		}
		b.ReportMetric(float64(n)/time.Since(t0).Seconds(), "setup-volumes/s")
		checkWorld(ctx, b, cs, n)
		settle(ctx, b, ctl)

		// 2. At rest, no server Leases yet: what the controller and the plane do on their own.
		noLeases := measure(ctx, b, c, ctl, *window)
		noLeases.log(b, "at rest, no server Leases")

		// 3. Every server takes its Lease and renews it as the agent does.
		renewers := startRenewers(ctx, b, cs, n)
		held := time.Now()
		settle(ctx, b, ctl)
		withLeases := measure(ctx, b, c, ctl, *window)
		withLeases.log(b, "at rest, every server renewing its Lease")
		report(b, "build", withLeases)

		// 4. Restart with the shipped defaults (4 workers, 100 requests/s): full resync, then
		// at rest again; first with the baseline binary if one is given, then with this one.
		// Every status's lease renewal time is older than LeaseStatusRefresh by then, as in a
		// cluster at rest.
		time.Sleep(time.Until(held.Add(provisioner.LeaseStatusRefresh + 10*time.Second)))
		if *baseline != "" {
			ctl.Stop()
			ctl = startController(b, c, *baseline, logDir, "controller-baseline")
			restarted(ctx, b, c, ctl, n, "base-")
		}
		ctl.Stop()
		ctl = startController(b, c, bin, logDir, "controller-2")
		restarted(ctx, b, c, ctl, n, "")
		b.ReportMetric(noLeases.apiTotal(), "noleases-api-req/s")
		b.ReportMetric(noLeases.ctlTotal(), "noleases-ctl-req/s")
		b.ReportMetric(float64(renewers.lost.Load()), "leases-lost")
		ctl.Stop()
	}
}

// restarted measures a freshly started controller: its full resync, then a window at rest
// with every server renewing, and its memory there.
func restarted(ctx context.Context, b *testing.B, c *cluster.Cluster, ctl *fixture.ControllerProcess, n int, prefix string) {
	resync(ctx, b, ctl, n, prefix)
	settle(ctx, b, ctl)
	after := measure(ctx, b, c, ctl, *window)
	after.log(b, prefix+"at rest after the restart (default flags), every server renewing")
	report(b, prefix+"rest", after)
	b.ReportMetric(ctl.RSSMiB(), prefix+"rss-MiB")
	b.ReportMetric(ctl.PeakRSSMiB(), prefix+"peak-rss-MiB")
	m, err := ctl.Scrape(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(m.Sum("go_memstats_heap_inuse_bytes", "")[""]/(1<<20), prefix+"heap-inuse-MiB")
}

// createVolumes creates RWX claims from to to-1 as the webhook leaves them (on the managed
// class, the backing class recorded) and, for each, the disk its backing claim will bind to: a
// local PV on one of the nodes, pre-bound to the backing claim's name.
func createVolumes(ctx context.Context, b *testing.B, cs kubernetes.Interface, from, to int) {
	nodeNames := make([]string, *nodes)
	for i := range nodeNames {
		nodeNames[i] = fmt.Sprintf("s%03d", i)
	}
	parallel(b, to-from, 32, func(j int) error {
		i := from + j
		claim, err := cs.CoreV1().PersistentVolumeClaims("scale").Create(ctx, &corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("v%05d", i), Annotations: map[string]string{swv1.AnnotationBackingStorageClass: scaleClass}},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				StorageClassName: ptr.To(fixture.ManagedClass),
				Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		pv := fixture.LocalPV(nodeNames[i%len(nodeNames)], i, "1Gi")
		pv.Name = fmt.Sprintf("disk-%05d", i)
		pv.Spec.StorageClassName = scaleClass
		pv.Spec.ClaimRef = &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(string(claim.UID))}
		_, err = cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
		return err
	})
}

// checkWorld waits until every claim is Bound and every server pod Running (the Ready count
// above is the controller's; this is the apiserver's): the world the figures are about.
func checkWorld(ctx context.Context, b *testing.B, cs kubernetes.Interface, n int) {
	fixture.WaitFor(b, ctx, 10*time.Minute, "every claim Bound and every server Running", func() error {
		claims, err := cs.CoreV1().PersistentVolumeClaims("scale").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		bound := 0
		for _, cl := range claims.Items {
			if cl.Status.Phase == corev1.ClaimBound {
				bound++
			}
		}
		pods, err := cs.CoreV1().Pods(fixture.SystemNamespace).List(ctx, metav1.ListOptions{LabelSelector: swv1.LabelComponent + "=" + swv1.ComponentNFSServer})
		if err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		if bound != n || running != n {
			return fmt.Errorf("%d of %d claims Bound, %d server pods Running", bound, n, running)
		}
		return nil
	})
}

// renewers are the servers' lease holders: the agent's own fencing.Holder, one per server pod.
type renewers struct {
	held, lost atomic.Int64
}

// startRenewers takes every server pod's Lease in its name, as its agent would on start-up,
// and keeps renewing it every -scale.renew-interval until the benchmark ends.
func startRenewers(ctx context.Context, b *testing.B, cs kubernetes.Interface, n int) *renewers {
	pods, err := cs.CoreV1().Pods(fixture.SystemNamespace).List(ctx, metav1.ListOptions{LabelSelector: swv1.LabelComponent + "=" + swv1.ComponentNFSServer})
	if err != nil {
		b.Fatal(err)
	}
	r := &renewers{}
	for i := range pods.Items {
		// Servers start a few hundred at a time, as a rolling start would: 5,000 Lease creates at
		// once starve the plane long enough for the controller to lose its own leader Lease
		// (it then exits, as it must, and its pod would restart).
		if i > 0 && i%250 == 0 {
			fixture.WaitFor(b, ctx, 5*time.Minute, "a wave of Leases held", r.heldAtLeast(i))
		}
		pod := &pods.Items[i]
		h, err := fencing.NewHolder(fencing.HolderOptions{
			Enabled: true, Options: kubeclient.NewOptions(5, 10), Namespace: pod.Namespace, Identity: fencing.Identity(pod),
			Duration: *duration, RenewInterval: *renew, SafetyMargin: *margin, Labels: pod.Labels,
		}, cs.CoordinationV1(), pod.Labels[swv1.LabelVolume])
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			serving, err := h.Gate(ctx)
			if err != nil {
				return
			}
			r.held.Add(1)
			<-serving.Done()
			if ctx.Err() == nil {
				r.lost.Add(1)
			}
		}()
	}
	fixture.WaitFor(b, ctx, 10*time.Minute, "every Lease held", r.heldAtLeast(n))
	return r
}

// heldAtLeast is a WaitFor condition: n Leases held.
func (r *renewers) heldAtLeast(n int) func() error {
	return func() error {
		if h := r.held.Load(); h < int64(n) {
			return fmt.Errorf("%d of %d held", h, n)
		}
		return nil
	}
}

// resync waits until the restarted controller has reconciled every volume and lease again and
// its queues are empty, and reports when 1, half, 99 % and all of n volumes were reconciled.
func resync(ctx context.Context, b *testing.B, ctl *fixture.ControllerProcess, n int, prefix string) {
	var first, half, p99 time.Duration
	var start map[string]float64
	fixture.WaitFor(b, ctx, 10*time.Minute, "every volume reconciled after the restart", func() error {
		m, err := ctl.Scrape(ctx)
		if err != nil {
			return err
		}
		if start == nil {
			start = m.Sum("rest_client_requests_total", "method")
		}
		rec := m.Sum("controller_runtime_reconcile_total", "controller")
		depth := m.Sum("workqueue_depth", "name")
		active := m.Sum("controller_runtime_active_workers", "controller")
		since := time.Since(ctl.Started)
		p := rec["provisioner"]
		if first == 0 && p >= 1 {
			first = since
		}
		if half == 0 && p >= float64(n)/2 {
			half = since
		}
		if p99 == 0 && p >= float64(n)*0.99 {
			p99 = since
		}
		done := p >= float64(n) && rec["fencer"] >= float64(n) && depth["provisioner"] == 0 && depth["fencer"] == 0 && active["provisioner"] == 0
		if done {
			b.ReportMetric(first.Seconds(), prefix+"resync-first-s")
			b.ReportMetric(half.Seconds(), prefix+"resync-p50-s")
			b.ReportMetric(p99.Seconds(), prefix+"resync-p99-s")
			b.ReportMetric(since.Seconds(), prefix+"resync-all-s")
			req := m.Sum("rest_client_requests_total", "method")
			var methods []string
			for k, v := range req {
				if d := v - start[k]; d > 0 {
					methods = append(methods, fmt.Sprintf("%s %.0f", k, d))
				}
			}
			sort.Strings(methods)
			b.Logf("%sresync: first reconcile %s, half %s, 99%% %s, all %s; %.0f provisioner and %.0f fencer reconciles; controller requests after its first scrape: %s", prefix,
				first.Round(time.Millisecond), half.Round(time.Millisecond), p99.Round(time.Millisecond), since.Round(time.Millisecond), p, rec["fencer"], strings.Join(methods, ", "))
		}
		if !done {
			return fmt.Errorf("%.0f provisioner, %.0f fencer reconciles, depth %v", p, rec["fencer"], depth)
		}
		return nil
	})
}

// settle waits until the controller's provisioner has been idle for 5 s in a row.
func settle(ctx context.Context, b *testing.B, ctl *fixture.ControllerProcess) {
	if err := ctl.Settle(ctx, 0, 5*time.Second, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
}

func startController(b *testing.B, c *cluster.Cluster, bin, dir, name string, extra ...string) *fixture.ControllerProcess {
	ctl, err := fixture.StartControllerProcess(c, bin, dir, name, extra...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ctl.Stop)
	return ctl
}

// parallel runs fn for 0..n-1 on workers goroutines and fails on the first error.
func parallel(b *testing.B, n, workers int, fn func(i int) error) {
	var wg sync.WaitGroup
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}
