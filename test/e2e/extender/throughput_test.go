package extender_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// BenchmarkSchedulingThroughput schedules 500 plain pods and 500 pods mounting a ShareWarden
// volume on the real kube-scheduler with SHAREWARDEN_BENCH_NODES kwok nodes (default 1,000),
// once on a plane whose scheduler has no extender and once on a plane with the shipped extender
// configuration (consumers then carry the webhook's marker and go through the extender), and
// reports pods/s for each and the ratios. kube-scheduler's client limits are raised to 1000/2000
// so that they do not set the pace.
func BenchmarkSchedulingThroughput(b *testing.B) {
	nodes := 1000
	if s := os.Getenv("SHAREWARDEN_BENCH_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		nodes = n
	}
	for b.Loop() {
		plainA, consA := schedulingRun(b, nodes, false)
		plainB, consB := schedulingRun(b, nodes, true)
		b.ReportMetric(plainA, "plain-pods/s-no-extender")
		b.ReportMetric(plainB, "plain-pods/s-extender")
		b.ReportMetric(consA, "consumer-pods/s-no-extender")
		b.ReportMetric(consB, "consumer-pods/s-extender")
		b.ReportMetric(plainB/plainA, "plain-ratio")
		b.ReportMetric(consB/consA, "consumer-ratio")
	}
}

func schedulingRun(b *testing.B, nodes int, withExtender bool) (plain, consumers float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := cluster.Config{
		SchedulerQPS: 1000, SchedulerBurst: 2000,
		ExtraControllerManagerArgs: []string{"--kube-api-qps=200", "--kube-api-burst=400"},
		// One kwok plays every node; its leases renew every 30 s, so the grace period grows too.
		NodeLeaseDuration:      2 * time.Minute,
		NodeMonitorGracePeriod: 5 * time.Minute,
	}
	var stopExtender func()
	if withExtender {
		ports, err := cluster.FreePorts(1)
		if err != nil {
			b.Fatal(err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])
		if cfg.SchedulerConfig, err = shippedConfig("http://" + addr + extender.DefaultURLPrefix); err != nil {
			b.Fatal(err)
		}
		defer func() {
			if stopExtender != nil {
				stopExtender()
			}
		}()
		c, err := cluster.Start(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Stop()
		if err := fixture.InstallCRDs(ctx, c); err != nil { // the extender watches SharedVolumes
			b.Fatal(err)
		}
		opts := extender.NewOptions()
		opts.SecureServing.BindPort = 0
		opts.HTTPAddress = addr
		opts.Kubeconfig = c.Kubeconfig()
		done := make(chan error, 1)
		extCtx, stop := context.WithCancel(ctx)
		go func() { done <- extender.Run(extCtx, opts) }()
		if err := waitReady(ctx, "http://"+addr+"/readyz", done); err != nil {
			stop()
			b.Fatalf("extender not ready: %v", err)
		}
		stopExtender = func() {
			stop()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				b.Logf("extender: %v", err)
			}
		}
		return measure(b, ctx, c, nodes, true)
	}
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	return measure(b, ctx, c, nodes, false)
}

// measure adds the nodes, provisions one volume, then times 500 plain and 500 consumer pods
// from creation to all bound to nodes.
func measure(b *testing.B, ctx context.Context, c *cluster.Cluster, nodes int, marked bool) (plain, consumers float64) {
	t0 := time.Now()
	progress := func(msg string) {
		fmt.Fprintf(os.Stderr, "throughput (extender %v) +%s: %s\n", marked, time.Since(t0).Round(time.Second), msg)
	}
	specs := make([]cluster.NodeSpec, nodes)
	for i := range specs {
		specs[i] = cluster.NodeSpec{Name: fmt.Sprintf("n%04d", i), Zone: fmt.Sprintf("zone-%d", i%3), Group: "bulk"}
	}
	if err := c.AddNodes(ctx, specs...); err != nil {
		b.Fatal(err)
	}
	progress(fmt.Sprintf("%d nodes Ready", nodes))
	if err := fixture.InstallCRDs(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := fixture.SetupStorage(ctx, c, fixture.Storage{Network: true, PVsPerNode: 1}); err != nil {
		b.Fatal(err)
	}
	opts := fixture.ControllerOptions(c)
	opts.LeaderElect = false
	ctl := fixture.StartController(ctx, opts)
	defer func() { _ = ctl.Stop() }()
	if err := c.CreateNamespace(ctx, "bench", nil); err != nil {
		b.Fatal(err)
	}
	cs := c.Client()
	claim := fixture.Claim("bench", "shared")
	if _, err := cs.CoreV1().PersistentVolumeClaims("bench").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().PersistentVolumeClaims("bench").Get(ctx, "shared", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.ClaimBound, nil
	}); err != nil {
		b.Fatalf("volume not bound: %v", err)
	}
	progress("volume Bound")
	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 2000, 4000
	fast, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	plain = scheduleBatch(b, ctx, fast, "plain", 500, func(p *corev1.Pod) {})
	consumers = scheduleBatch(b, ctx, fast, "consumer", 500, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared"}}}}
		if marked { // what the webhook adds
			one := resource.MustParse("1")
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{swv1.ResourceConsumer: one}
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{swv1.ResourceConsumer: one}
		}
	})
	progress(fmt.Sprintf("plain %.1f pods/s, consumers %.1f pods/s", plain, consumers))
	return plain, consumers
}

// scheduleBatch creates n pods at once and returns pods/s from the first create to the last bound.
func scheduleBatch(b *testing.B, ctx context.Context, cs kubernetes.Interface, prefix string, n int, mut func(*corev1.Pod)) float64 {
	start := time.Now()
	errs := make(chan error, n)
	sem := make(chan struct{}, 50)
	for i := range n {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("%s-%03d", prefix, i), Labels: map[string]string{"bench": prefix}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
			}
			mut(p)
			if _, err := cs.CoreV1().Pods("bench").Create(ctx, p, metav1.CreateOptions{}); err != nil {
				errs <- err
			}
		}(i)
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var last int
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods("bench").List(ctx, metav1.ListOptions{LabelSelector: "bench=" + prefix})
		if err != nil {
			return false, nil //nolint:nilerr // retry
		}
		last = 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				last++
			}
		}
		return last == n, nil
	}); err != nil {
		b.Fatalf("%s: only %d of %d pods scheduled: %v", prefix, last, n, err)
	}
	return float64(n) / time.Since(start).Seconds()
}
