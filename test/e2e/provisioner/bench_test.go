package provisioner_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/mutators"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

var (
	benchClaims   = flag.String("provision.claims", "200,1000", "BenchmarkProvision's limits=* planes: claim counts created at once, one batch after the other")
	benchChart03  = flag.Bool("provision.chart03", true, "BenchmarkProvision's face=csi planes: also run a batch behind csi-provisioner as chart 0.3 ran it (5/10 client limits, 10 threads)")
	benchBaseline = flag.String("provision.baseline", "", "BenchmarkProvision's face=csi planes: a sharewarden binary (an earlier commit's) whose batch runs first, labelled csi-base, beside this checkout's on the same plane")
	benchWorkers  = flag.String("provision.workers", "4,16", "BenchmarkProvision: the controller's --workers for its ShareWarden batches, one batch per value on the same plane (4 is the shipped default; chart 0.3's CSI batch uses the first)")
)

// BenchmarkProvision measures a ShareWarden volume's path step by step and, on the same plane in
// the same run, the limit the Kubernetes components set: as many plain ReadWriteOnce claims on the
// backing class, each with one pod, bound by the kube components alone. It runs once with
// kube-controller-manager, kube-scheduler and the controller at their default client limits, as
// clusters run them, and once with raised ones, plus the plane a new user tries: 3 kwok nodes,
// defaults, 100 claims. Every write to the apiserver is counted per component from the
// apiserver's audit log, so the figures show whose rate limiter each volume's writes go through.
func BenchmarkProvision(b *testing.B) {
	sizes, err := parseCounts("-provision.claims", *benchClaims)
	if err != nil {
		b.Fatal(err)
	}
	workers, err := parseCounts("-provision.workers", *benchWorkers)
	if err != nil {
		b.Fatal(err)
	}
	four := []cluster.NodeSpec{{Name: "b1", Zone: "a"}, {Name: "b2", Zone: "a"}, {Name: "b3", Zone: "b"}, {Name: "b4", Zone: "b"}}
	legacy := make([]swRun, len(workers))
	for i, w := range workers {
		legacy[i] = swRun{label: fmt.Sprintf("w%d", w), workers: w}
	}
	// The CSI face as the chart ships it, once per workers value, beside the sidecar as chart
	// 0.3 ran it.
	var csiRuns []swRun
	if *benchChart03 {
		csiRuns = append(csiRuns, swRun{label: "csi-chart03", workers: workers[0], sidecar: &chart03Sidecar})
	}
	if *benchBaseline != "" {
		csiRuns = append(csiRuns, swRun{label: "csi-base", workers: workers[0], sidecar: &chartSidecar, bin: *benchBaseline})
	}
	for i, w := range workers {
		label := "csi"
		if i > 0 {
			label = fmt.Sprintf("csi-w%d", w)
		}
		csiRuns = append(csiRuns, swRun{label: label, workers: w, sidecar: &chartSidecar})
	}
	b.Run("limits=raised", func(b *testing.B) { benchProvision(b, four, true, sizes, legacy, false) })
	b.Run("limits=default", func(b *testing.B) { benchProvision(b, four, false, sizes, legacy, false) })
	b.Run("face=csi/limits=default", func(b *testing.B) { benchProvision(b, four, false, sizes, csiRuns, false) })
	b.Run("face=csi/limits=raised", func(b *testing.B) { benchProvision(b, four, true, sizes, csiRuns, false) })
	b.Run("new-user-3-nodes", func(b *testing.B) {
		benchProvision(b, cluster.ThreeNodesTwoZones(), false, []int{100}, legacy[:1], true)
	})
}

// swRun is one ShareWarden batch's set-up: the controller's --workers and, for the CSI face,
// the external-provisioner it runs behind (nil: the legacy in-tree provisioner's class).
type swRun struct {
	label   string
	workers int
	sidecar *sidecarSpec
	// bin is the sharewarden binary to run ("": this checkout's).
	bin string
}

// sidecarSpec is how external-provisioner runs in front of the controller's CSI endpoint.
type sidecarSpec struct {
	qps           float32
	burst         int
	workerThreads int
}

// chartSidecar is csi-provisioner as charts/sharewarden/values.yaml runs it
// (csi.controller.provisioner: kubeAPIQPS, kubeAPIBurst, workerThreads); chart03Sidecar as
// chart 0.3 did: upstream's 5/10 client limits and 10 worker threads.
var (
	chartSidecar   = sidecarSpec{qps: 50, burst: 100, workerThreads: 100}
	chart03Sidecar = sidecarSpec{qps: 5, burst: 10, workerThreads: 10}
)

// csiBenchClass is the CSI face's managed class on the benchmark's plane, backed like the
// legacy one by the local-PV class.
const csiBenchClass = "sharewarden-csi"

func parseCounts(name, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want comma-separated positive counts", name, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// raisedLimits are the client limits of kube-controller-manager, kube-scheduler and the controller
// when raised; the defaults are 20/30, 50/100 and 100/200.
const raisedQPS, raisedBurst = 500, 1000

// benchProvision runs each batch size on one plane: ShareWarden claims once per workers value,
// each batch with a controller started for it with that --workers, then as many plain claims
// with a pod each. With unmarked, a first batch of ShareWarden claims is admitted as the
// webhook did before it named the provisioner on them (see mutators.MutateClaim), for the
// comparison on the same plane.
func benchProvision(b *testing.B, nodes []cluster.NodeSpec, raised bool, sizes []int, runs []swRun, unmarked bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	work := b.TempDir()
	auditLog := filepath.Join(work, "audit.log")
	policy := filepath.Join(work, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg := cluster.Config{
		Nodes:              nodes,
		ExtraAPIServerArgs: []string{"--audit-policy-file=" + policy, "--audit-log-path=" + auditLog, "--audit-log-format=json", "--audit-log-maxsize=0"},
	}
	var ctlArgs []string
	if raised {
		cfg.SchedulerQPS, cfg.SchedulerBurst = raisedQPS, raisedBurst
		cfg.ExtraControllerManagerArgs = []string{fmt.Sprintf("--kube-api-qps=%d", raisedQPS), fmt.Sprintf("--kube-api-burst=%d", raisedBurst), "--concurrent-service-endpoint-syncs=10"}
		ctlArgs = append(ctlArgs, fmt.Sprintf("--kube-api-qps=%d", raisedQPS), fmt.Sprintf("--kube-api-burst=%d", raisedBurst))
	}
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	if err := fixture.InstallCRDs(ctx, c); err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	// One ShareWarden batch per run, the plain batch, and the unmarked one.
	batches := len(runs) + 1
	if unmarked {
		batches++
	}
	// One local PV per backing claim and per plain claim, spread over the nodes.
	if err := fixture.SetupStorage(ctx, c, fixture.Storage{PVsPerNode: (batches*total)/len(nodes) + 10, PVSize: "2Gi"}); err != nil {
		b.Fatal(err)
	}
	bin, err := cluster.BuildSharewarden(work)
	if err != nil {
		b.Fatal(err)
	}
	csiFace := slices.ContainsFunc(runs, func(r swRun) bool { return r.sidecar != nil })
	if csiFace {
		if err := c.InstallSnapshotCRDs(ctx); err != nil {
			b.Fatal(err)
		}
		if err := createCSIBenchClass(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	// startController starts the controller for run r's batch in namespace ns, logging to
	// controller-<ns>.log, and, for the CSI face, its external-provisioner; it waits until the
	// controller has reconciled the earlier batches' existing volumes and is idle, so that a
	// batch never shares the controller with a resync. stop ends both.
	existing := 0
	startController := func(r swRun, ns string) (ctl *fixture.ControllerProcess, stop func()) {
		args := append([]string{"--leader-elect=false", fmt.Sprintf("--workers=%d", r.workers)}, ctlArgs...)
		sock := filepath.Join(work, "csi-"+ns+".sock")
		if r.sidecar != nil {
			args = append(args, "--csi-endpoint=unix://"+sock)
		}
		var err error
		exe := bin
		if r.bin != "" {
			exe = r.bin
		}
		if ctl, err = fixture.StartControllerProcess(c, exe, work, "controller-"+ns, args...); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(ctl.Stop)
		stop = ctl.Stop
		if r.sidecar != nil {
			ss, err := c.StartCSISidecars(ctx, cluster.SidecarConfig{
				Name: ns, Endpoint: sock, Provisioner: true, QPS: r.sidecar.qps, Burst: r.sidecar.burst,
				// The chart's flags (charts/sharewarden/templates/controller/deployment.yaml);
				// --retry-interval-max back to upstream's 5m, which the chart keeps.
				ProvisionerArgs: []string{"--extra-create-metadata", "--volume-name-prefix=pvc", "--default-fstype=",
					"--timeout=120s", "--retry-interval-max=5m", fmt.Sprintf("--worker-threads=%d", r.sidecar.workerThreads)},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(ss.Stop)
			stop = func() { ss.Stop(); ctl.Stop() }
		}
		if err := ctl.Settle(ctx, float64(existing), 2*time.Second, 10*time.Minute); err != nil {
			b.Fatal(err)
		}
		return ctl, stop
	}

	rc := c.RESTConfig()
	rc.QPS, rc.Burst = 2000, 4000
	rc.UserAgent = "bench"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	tr := newTracker()
	tr.watch(ctx, b, cs)
	rwx, err := webhookClaim(ctx, cs, fixture.ManagedClass)
	if err != nil {
		b.Fatal(err)
	}
	rwxCSI := rwx
	if csiFace {
		if rwxCSI, err = webhookClaim(ctx, cs, csiBenchClass); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	for b.Loop() {
		for _, n := range sizes {
			at := fmt.Sprintf("@%d", n)
			var old batch
			if unmarked {
				ns := fmt.Sprintf("sw-unmarked-%d", n)
				_, stop := startController(runs[0], ns)
				if err := c.CreateNamespace(ctx, ns, nil); err != nil {
					b.Fatal(err)
				}
				old = runBatch(ctx, b, cs, tr, auditLog, ns, n, func(ctx context.Context, i int) error {
					pvc := rwx(ns, claimName(i))
					delete(pvc.Annotations, swv1.AnnotationStorageProvisioner)
					delete(pvc.Annotations, swv1.AnnotationBetaStorageProvisioner)
					_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
					return err
				}, swSteps)
				existing += n
				stop()
				b.ReportMetric(old.rate, "sw-unmarked-claims/s"+at)
				b.ReportMetric(old.perVolume("pv-controller"), "sw-unmarked-pvctl-writes/vol"+at)
			}
			sws := make([]batch, len(runs))
			var ctl *fixture.ControllerProcess
			stop := func() {}
			for j, r := range runs {
				ns := fmt.Sprintf("sw-%d-%s", n, r.label)
				stop()
				ctl, stop = startController(r, ns)
				mk := rwx
				if r.sidecar != nil {
					mk = rwxCSI
				}
				if err := c.CreateNamespace(ctx, ns, nil); err != nil {
					b.Fatal(err)
				}
				cpu0 := cluster.ProcessCPU(ctl.Pid())
				sws[j] = runBatch(ctx, b, cs, tr, auditLog, ns, n, func(ctx context.Context, i int) error {
					_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, mk(ns, claimName(i)), metav1.CreateOptions{})
					return err
				}, swSteps)
				existing += n
				cpu := cluster.ProcessCPU(ctl.Pid()) - cpu0
				wat := at + "-" + r.label
				b.ReportMetric(sws[j].rate, "sw-claims/s"+wat)
				b.ReportMetric(sws[j].perVolume("pv-controller"), "sw-pvctl-writes/vol"+wat)
				b.ReportMetric(sws[j].perVolume("sharewarden"), "sw-own-writes/vol"+wat)
				if r.sidecar != nil {
					b.ReportMetric(sws[j].perVolume("csi-provisioner"), "sw-csiprov-writes/vol"+wat)
				}
				b.ReportMetric(cpu.Seconds(), "ctl-cpu-s"+wat)
				b.ReportMetric(ctl.PeakRSSMiB(), "ctl-peak-MiB"+wat)
			}
			// The last controller keeps running through the plain batch, idle, as it would in a
			// cluster: every ShareWarden batch and the plain one share the plane with a controller.

			ns := fmt.Sprintf("rwo-%d", n)
			if err := c.CreateNamespace(ctx, ns, nil); err != nil {
				b.Fatal(err)
			}
			plain := runBatch(ctx, b, cs, tr, auditLog, ns, n, func(ctx context.Context, i int) error {
				if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, rwoClaim(ns, claimName(i)), metav1.CreateOptions{}); err != nil {
					return err
				}
				_, err := cs.CoreV1().Pods(ns).Create(ctx, consumerPod(ns, claimName(i)), metav1.CreateOptions{})
				return err
			}, plainSteps)

			stop()
			b.ReportMetric(plain.rate, "rwo-claims/s"+at)
			b.ReportMetric(plain.perVolume("pv-controller"), "rwo-pvctl-writes/vol"+at)
			if unmarked {
				b.Logf("%d claims at once, limits %s: ShareWarden claims admitted without the provisioner annotation %.1f claims/s (ratio %.2f)\n%s",
					n, limitsName(raised), old.rate, old.rate/plain.rate, old.report("ShareWarden RWX claim, unmarked"))
			}
			for j, r := range runs {
				b.ReportMetric(sws[j].rate/plain.rate, fmt.Sprintf("ratio%s-%s", at, r.label))
				b.Logf("%d claims at once, limits %s, %s: ShareWarden %.1f claims/s, plain RWO claim+pod %.1f/s, ratio %.2f\n%s",
					n, limitsName(raised), r.describe(), sws[j].rate, plain.rate, sws[j].rate/plain.rate, sws[j].report("ShareWarden RWX claim"))
			}
			b.Logf("%d claims at once, limits %s: plain RWO claims\n%s", n, limitsName(raised), plain.report("plain RWO claim + pod"))
		}
	}
}

func (r swRun) describe() string {
	if r.sidecar == nil {
		return fmt.Sprintf("legacy provisioner, controller --workers=%d", r.workers)
	}
	of := ""
	if r.bin != "" {
		of = " (" + r.bin + ")"
	}
	return fmt.Sprintf("CSI face, controller%s --workers=%d, csi-provisioner --kube-api-qps=%g --kube-api-burst=%d --worker-threads=%d",
		of, r.workers, r.sidecar.qps, r.sidecar.burst, r.sidecar.workerThreads)
}

// createCSIBenchClass makes the CSI face's managed class, backed by the local-PV class.
func createCSIBenchClass(ctx context.Context, c *cluster.Cluster) error {
	sc := &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: csiBenchClass},
		Provisioner:          swv1.CSIDriverName,
		Parameters:           map[string]string{swv1.ParameterBackingStorageClass: fixture.BackingClass, provisioner.ParamClientAllowlist: provisioner.ClientAllowlistOff},
		ReclaimPolicy:        ptr.To(corev1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingImmediate),
		AllowVolumeExpansion: ptr.To(true),
	}
	if _, err := c.Client().StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating class %s: %w", sc.Name, err)
	}
	return nil
}

func limitsName(raised bool) string {
	if raised {
		return fmt.Sprintf("raised (%d/%d)", raisedQPS, raisedBurst)
	}
	return "default"
}

func claimName(i int) string { return fmt.Sprintf("c%04d", i) }

// auditPolicy logs every write, at Metadata level, once it completed.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted, Panic]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`

// webhookClaim returns a maker of RWX claims on the opted-in backing class as the admission
// webhook admits them (mutators.MutateClaim with the plane's classes): the benchmark does not
// run the webhook itself, whose pod markers need the scheduler extender.
func webhookClaim(ctx context.Context, cs kubernetes.Interface, managed string) (func(ns, name string) *corev1.PersistentVolumeClaim, error) {
	facts := mutators.ClaimFacts{ManagedClass: managed, Classes: map[string]*storagev1.StorageClass{}}
	for _, name := range []string{managed, fixture.BackingClass} {
		sc, err := cs.StorageV1().StorageClasses().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		facts.Classes[name] = sc
	}
	return func(ns, name string) *corev1.PersistentVolumeClaim {
		in := fixture.Claim(ns, name, fixture.OnClass(fixture.BackingClass))
		res, err := mutators.MutateClaim(in, facts)
		if err != nil || res.Outcome != mutators.Rewritten {
			panic(fmt.Sprintf("webhook rules did not rewrite the claim: %v %v", res.Outcome, err))
		}
		return res.Claim
	}, nil
}

func rwoClaim(ns, name string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: ptr.To(fixture.BackingClass),
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
}

func consumerPod(ns, claim string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: claim},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
	}
}

// A step is a moment of a claim's path, seen by the benchmark's watches.
type step struct {
	key, what, who string
}

// swSteps is a ShareWarden claim's path; each row's time is taken from the step before it.
var swSteps = []step{
	{"created", "created", ""},
	{"backing-created", "backing claim created", "ShareWarden"},
	{"server-created", "server pod created", "ShareWarden"},
	{"backing-bound", "backing claim Bound", "kube-scheduler PreBind + PV controller"},
	{"server-scheduled", "server pod scheduled", "kube-scheduler PreBind poll + bind"},
	{"server-ready", "server pod Ready", "kwok"},
	{"pv-created", "PV created", "ShareWarden (CSI: its CreateVolume, csi-provisioner's create)"},
	{"bound", "claim Bound", "PV controller"},
}

var plainSteps = []step{
	{"created", "claim and pod created", ""},
	{"bound", "claim Bound", "kube-scheduler PreBind + PV controller"},
	{"pod-scheduled", "pod scheduled", "kube-scheduler PreBind poll + bind"},
	{"pod-running", "pod Running", "kwok"},
}

// chainFrom says which earlier step each step is measured from, when not the row before: the
// ShareWarden reactions are measured from the claim's creation, and backing Bound from the
// server pod's creation (which triggers the scheduler).
var chainFrom = map[string]string{"backing-created": "created", "server-created": "backing-created", "backing-bound": "server-created"}

// tracker records the first time the benchmark's watches saw each step of each claim, keyed by
// the user's claim namespace/name. Object timestamps have one-second resolution; watch times
// are the finer clock.
type tracker struct {
	mu    sync.Mutex
	times map[string]map[string]time.Time
}

func newTracker() *tracker { return &tracker{times: map[string]map[string]time.Time{}} }

func (t *tracker) mark(claim, key string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.times[claim]
	if m == nil {
		m = map[string]time.Time{}
		t.times[claim] = m
	}
	if _, ok := m[key]; !ok {
		m[key] = at
	}
}

func (t *tracker) get(claim, key string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.times[claim][key]
	return at, ok
}

func ownerKey(o metav1.Object) (string, bool) {
	l := o.GetLabels()
	if l[swv1.LabelManagedBy] != swv1.ManagedByController || l[swv1.LabelClaimName] == "" {
		return "", false
	}
	return l[swv1.LabelClaimNamespace] + "/" + l[swv1.LabelClaimName], true
}

func (t *tracker) onClaim(obj any) {
	p, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	now := time.Now()
	if key, ok := ownerKey(p); ok {
		t.mark(key, "backing-created", now)
		if p.Status.Phase == corev1.ClaimBound {
			t.mark(key, "backing-bound", now)
		}
		return
	}
	if p.Status.Phase == corev1.ClaimBound {
		t.mark(p.Namespace+"/"+p.Name, "bound", now)
	}
}

func (t *tracker) onPod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	key, server := ownerKey(p)
	prefix := "server-"
	if server {
		t.mark(key, "server-created", now)
	} else {
		key, prefix = p.Namespace+"/"+p.Name, "pod-"
	}
	if p.Spec.NodeName != "" {
		t.mark(key, prefix+"scheduled", now)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			t.mark(key, prefix+"ready", now)
		}
	}
	if p.Status.Phase == corev1.PodRunning {
		t.mark(key, prefix+"running", now)
	}
}

func (t *tracker) onPV(obj any) {
	p, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return
	}
	if key, ok := ownerKey(p); ok {
		t.mark(key, "pv-created", time.Now())
	} else if p.Spec.CSI != nil && p.Spec.CSI.Driver == swv1.CSIDriverName && p.Spec.ClaimRef != nil {
		// external-provisioner's PV, before the controller labels it.
		t.mark(p.Spec.ClaimRef.Namespace+"/"+p.Spec.ClaimRef.Name, "pv-created", time.Now())
	}
}

func (t *tracker) watch(ctx context.Context, b *testing.B, cs kubernetes.Interface) {
	for _, w := range []struct {
		resource string
		obj      runtime.Object
		on       func(any)
	}{
		{"persistentvolumeclaims", &corev1.PersistentVolumeClaim{}, t.onClaim},
		{"pods", &corev1.Pod{}, t.onPod},
		{"persistentvolumes", &corev1.PersistentVolume{}, t.onPV},
	} {
		on := w.on
		_, inf := cache.NewInformerWithOptions(cache.InformerOptions{
			ListerWatcher: cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), w.resource, "", fields.Everything()),
			ObjectType:    w.obj,
			Handler:       cache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, o any) { on(o) }},
		})
		go inf.Run(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			b.Fatalf("%s watch did not sync", w.resource)
		}
	}
}

// batch is one batch's outcome.
type batch struct {
	n      int
	rate   float64
	steps  []step
	deltas map[string][]time.Duration
	total  []time.Duration
	writes map[string]map[string]int // component → "verb resource" → count
}

// runBatch creates n claims at once with create(i), waits until each reached its last step,
// and reports the rate from the first create to the last claim done, each step's latency and
// every component's writes during the batch.
func runBatch(ctx context.Context, b *testing.B, cs kubernetes.Interface, tr *tracker, auditLog, ns string, n int, create func(context.Context, int) error, steps []step) batch {
	off := fileSize(auditLog)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.mark(ns+"/"+claimName(i), "created", time.Now())
			if err := create(ctx, i); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	last := steps[len(steps)-1].key
	deadline := time.Now().Add(15 * time.Minute)
	var end time.Time
	for {
		done := 0
		end = time.Time{}
		for i := range n {
			if at, ok := tr.get(ns+"/"+claimName(i), last); ok {
				done++
				if at.After(end) {
					end = at
				}
			}
		}
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: only %d of %d claims reached %q after 15 minutes", ns, done, n, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the audit log catch up with the last writes
	out := batch{n: n, rate: float64(n) / end.Sub(start).Seconds(), steps: steps, deltas: map[string][]time.Duration{}}
	for i := range n {
		claim := ns + "/" + claimName(i)
		t0, _ := tr.get(claim, "created")
		tEnd, _ := tr.get(claim, last)
		out.total = append(out.total, tEnd.Sub(t0))
		for j := 1; j < len(steps); j++ {
			from := steps[j-1].key
			if f, ok := chainFrom[steps[j].key]; ok {
				from = f
			}
			a, ok1 := tr.get(claim, from)
			z, ok2 := tr.get(claim, steps[j].key)
			if ok1 && ok2 {
				out.deltas[steps[j].key] = append(out.deltas[steps[j].key], z.Sub(a))
			}
		}
	}
	var err error
	if out.writes, err = auditWrites(auditLog, off); err != nil {
		b.Fatal(err)
	}
	return out
}

// perVolume is a component's writes per claim of the batch.
func (bt batch) perVolume(component string) float64 {
	sum := 0
	for _, c := range bt.writes[component] {
		sum += c
	}
	return float64(sum) / float64(bt.n)
}

func (bt batch) report(title string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "  %s, %d at once: %.1f claims/s; create → done p50 %s p99 %s\n", title, bt.n, bt.rate, pct(bt.total, 50), pct(bt.total, 99))
	fmt.Fprintf(&s, "    %-42s %-40s %8s %8s\n", "step (from the step before)", "whose work", "p50", "p99")
	for _, st := range bt.steps[1:] {
		from := ""
		if f, ok := chainFrom[st.key]; ok {
			for _, o := range bt.steps {
				if o.key == f {
					from = " (from " + o.what + ")"
				}
			}
		}
		fmt.Fprintf(&s, "    %-42s %-40s %8s %8s\n", st.what+from, st.who, pct(bt.deltas[st.key], 50), pct(bt.deltas[st.key], 99))
	}
	comps := make([]string, 0, len(bt.writes))
	for c := range bt.writes {
		comps = append(comps, c)
	}
	sort.Strings(comps)
	fmt.Fprintf(&s, "    API writes per claim, by component (each has its own client rate limiter):\n")
	for _, c := range comps {
		kinds := make([]string, 0, len(bt.writes[c]))
		for k := range bt.writes[c] {
			kinds = append(kinds, k)
		}
		sort.Slice(kinds, func(i, j int) bool { return bt.writes[c][kinds[i]] > bt.writes[c][kinds[j]] })
		var parts []string
		for _, k := range kinds {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, float64(bt.writes[c][k])/float64(bt.n)))
		}
		fmt.Fprintf(&s, "      %-22s %5.2f  (%s)\n", c, bt.perVolume(c), strings.Join(parts, ", "))
	}
	return s.String()
}

func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100].Round(10 * time.Millisecond).String()
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// auditWrites counts the audit log's writes from offset on, by component and "verb resource".
func auditWrites(path string, offset int64) (map[string]map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	out := map[string]map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Verb      string `json:"verb"`
			UserAgent string `json:"userAgent"`
			User      struct {
				Username string `json:"username"`
			} `json:"user"`
			ObjectRef struct {
				Resource    string `json:"resource"`
				Subresource string `json:"subresource"`
			} `json:"objectRef"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line cut at the offset
		}
		comp := component(ev.User.Username, ev.UserAgent)
		if comp == "" {
			continue
		}
		res := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			res += "/" + ev.ObjectRef.Subresource
		}
		if out[comp] == nil {
			out[comp] = map[string]int{}
		}
		out[comp][ev.Verb+" "+res]++
	}
	return out, sc.Err()
}

// component names who made a request: a kube-controller-manager controller by its service
// account, kube-scheduler, kwok, ShareWarden's controller by its user agent; the benchmark's
// own writes and leases' renewals are left out.
func component(user, agent string) string {
	switch {
	case user == "system:serviceaccount:kube-system:persistent-volume-binder":
		return "pv-controller"
	case strings.HasPrefix(user, "system:serviceaccount:kube-system:"):
		return "kcm/" + strings.TrimPrefix(user, "system:serviceaccount:kube-system:")
	case user == "system:kube-scheduler":
		return "kube-scheduler"
	case user == "kwok":
		return "kwok"
	case strings.HasPrefix(agent, "sharewarden-controller"):
		return "sharewarden"
	case strings.HasPrefix(user, "sharewarden-test:") && strings.HasSuffix(user, "-csi-provisioner"):
		return "csi-provisioner"
	}
	return ""
}
