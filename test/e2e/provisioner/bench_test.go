package provisioner_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// BenchmarkProvision creates 200 RWX claims at once against the controller running as its own
// process (so its CPU and memory are its own), reports claims/s to Bound and per-claim latency,
// then grows to 1,000 managed volumes and reports the controller's memory there.
// Kubernetes' own components get raised client limits so that ShareWarden sets the pace.
func BenchmarkProvision(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	nodes := []cluster.NodeSpec{{Name: "b1", Zone: "a"}, {Name: "b2", Zone: "a"}, {Name: "b3", Zone: "b"}, {Name: "b4", Zone: "b"}}
	c, err := cluster.Start(ctx, cluster.Config{
		Nodes:        nodes,
		SchedulerQPS: 500, SchedulerBurst: 1000,
		ExtraControllerManagerArgs: []string{"--kube-api-qps=500", "--kube-api-burst=1000", "--concurrent-service-endpoint-syncs=10"},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	if err := fixture.InstallCRDs(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := fixture.SetupStorage(ctx, c, fixture.Storage{PVsPerNode: 260, PVSize: "2Gi"}); err != nil {
		b.Fatal(err)
	}
	bin, err := cluster.BuildSharewarden(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(b.TempDir(), "controller.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	ctl := exec.Command(bin, "controller", "--kubeconfig="+c.Kubeconfig(), "--namespace="+fixture.SystemNamespace,
		"--server-service-account="+fixture.ServerSA, "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--workers=8", "--kube-api-qps=500", "--kube-api-burst=1000", "--zap-log-level=error")
	ctl.Stdout, ctl.Stderr = logf, logf
	ctl.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ctl.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ctl.Process.Kill(); _ = ctl.Wait() }()

	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.CreateNamespace(ctx, "bench", nil); err != nil {
		b.Fatal(err)
	}
	bound := watchBound(ctx, b, cs, "bench")

	b.ResetTimer()
	for b.Loop() {
		cpu0 := procCPU(ctl.Process.Pid)
		lat, wall := createAndWait(ctx, b, cs, bound, 0, 200)
		cpu := procCPU(ctl.Process.Pid) - cpu0
		b.ReportMetric(float64(len(lat))/wall.Seconds(), "claims/s")
		b.ReportMetric(percentile(lat, 50).Seconds(), "p50-s")
		b.ReportMetric(percentile(lat, 99).Seconds(), "p99-s")
		b.ReportMetric(cpu.Seconds(), "ctl-cpu-s")
		b.ReportMetric(float64(procMem(ctl.Process.Pid, "VmHWM"))/(1<<20), "ctl-peak-MiB@200")

		createAndWait(ctx, b, cs, bound, 200, 1000)
		time.Sleep(5 * time.Second) // a few idle resyncs at 1,000 volumes
		b.ReportMetric(float64(procMem(ctl.Process.Pid, "VmRSS"))/(1<<20), "ctl-rss-MiB@1000")
		b.ReportMetric(float64(procMem(ctl.Process.Pid, "VmHWM"))/(1<<20), "ctl-peak-MiB@1000")
	}
}

// watchBound reports each claim's first Bound time.
func watchBound(ctx context.Context, b *testing.B, cs kubernetes.Interface, ns string) *sync.Map {
	var bound sync.Map
	lw := cache.NewListWatchFromClient(cs.CoreV1().RESTClient(), "persistentvolumeclaims", ns, fields.Everything())
	_, ctrl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw, ObjectType: &corev1.PersistentVolumeClaim{},
		Handler: cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, obj any) {
			if p := obj.(*corev1.PersistentVolumeClaim); p.Status.Phase == corev1.ClaimBound {
				bound.LoadOrStore(p.Name, time.Now())
			}
		}},
	})
	go ctrl.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), ctrl.HasSynced) {
		b.Fatal("claim watch did not sync")
	}
	return &bound
}

// createAndWait creates claims [from, to) at once and waits until all are Bound; it returns
// each claim's create-to-Bound latency and the wall time from the first create to the last Bound.
func createAndWait(ctx context.Context, b *testing.B, cs kubernetes.Interface, bound *sync.Map, from, to int) ([]time.Duration, time.Duration) {
	created := make([]time.Time, to)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			created[i] = time.Now()
			if _, err := cs.CoreV1().PersistentVolumeClaims("bench").Create(ctx, fixture.Claim("bench", fmt.Sprintf("c%04d", i)), metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var lat []time.Duration
	var last time.Time
	deadline := time.Now().Add(10 * time.Minute)
	for {
		lat, last = lat[:0], time.Time{}
		for i := from; i < to; i++ {
			if v, ok := bound.Load(fmt.Sprintf("c%04d", i)); ok {
				t := v.(time.Time)
				lat = append(lat, t.Sub(created[i]))
				if t.After(last) {
					last = t
				}
			}
		}
		if len(lat) == to-from {
			return lat, last.Sub(start)
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d claims Bound after 10 minutes", len(lat), to-from)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

// procCPU is user+system CPU time of pid (clock ticks are 100/s on Linux).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procMem reads a Vm* field of /proc/pid/status, in bytes.
func procMem(pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}
