package extender_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// BenchmarkSchedulingThroughput measures what the extender costs kube-scheduler, on one plane
// with SHAREWARDEN_BENCH_NODES kwok nodes (default 1,000) in three zones and four
// kube-schedulers side by side, each with its own profile name:
//
//   - default: the harness's scheduler, no extender (the cluster's scheduler without ShareWarden);
//   - own: deploy/scheduler/kube-scheduler-config.yaml (the extender in the cluster's scheduler);
//   - second: deploy/scheduler/second-scheduler-config.yaml (ShareWarden's second scheduler;
//     consumers go to its consumer profile);
//   - second-plain: the same without its extenders entry;
//   - plugin: kube-scheduler built with ShareWarden's plugin (hack/tools/scheduler) and
//     deploy/scheduler/plugin-scheduler-config.yaml: the extender's decision inside the
//     scheduler, no HTTP round trip.
//
// Each round times, on each scheduler in turn (the order reversed every other round, so that
// drift on the shared machine falls on both sides of a ratio), SHAREWARDEN_BENCH_PODS plain pods
// (default 500) and as many pods mounting one ShareWarden volume, each batch created at once,
// from the first create to the last pod bound; consumers sent to a scheduler with the extender
// carry the webhook's marker. Then the batch is deleted. It reports the median over
// SHAREWARDEN_BENCH_ROUNDS rounds (default 3) of each round's ratios own/default and
// second/second-plain, and, on stderr, every batch with what the scheduler spent per pod
// (scheduling algorithm, its framework plugins, the rest: the extender calls as the scheduler
// sees them) and what the extender spent answering. kube-scheduler's client limits are raised to
// 1000/2000 so that they do not set the pace. SHAREWARDEN_BENCH_PROFILE=dir writes there a CPU
// profile of each scheduler over the first 10 s of its first consumer batch.
func BenchmarkSchedulingThroughput(b *testing.B) {
	nodes, rounds, pods := envInt(b, "SHAREWARDEN_BENCH_NODES", 1000), envInt(b, "SHAREWARDEN_BENCH_ROUNDS", 3), envInt(b, "SHAREWARDEN_BENCH_PODS", 500)
	for b.Loop() {
		res := schedulingRun(b, nodes, rounds, pods, os.Getenv("SHAREWARDEN_BENCH_PROFILE"))
		for _, p := range pairs {
			for _, kind := range []string{"plain", "consumer"} {
				var ratios []float64
				for _, r := range res {
					ratios = append(ratios, r[p.with][kind].podsPerSec/r[p.without][kind].podsPerSec)
				}
				b.ReportMetric(median(ratios), p.name+"-"+kind+"-ratio")
			}
		}
		for _, s := range schedulers {
			for _, kind := range []string{"plain", "consumer"} {
				var rates []float64
				for _, r := range res {
					rates = append(rates, r[s.name][kind].podsPerSec)
				}
				b.ReportMetric(median(rates), s.name+"-"+kind+"-pods/s")
			}
		}
	}
}

// A scheduler under test: the profile its pods name, and whether consumers go to the extender.
type benchScheduler struct {
	name, profile string
	extender      bool // consumers carry the markers (the extender, or the plugin, decides)
	plugin        bool // the plugin build with the shipped plugin configuration
	port          int
}

var schedulers = []*benchScheduler{
	{name: "default", profile: corev1.DefaultSchedulerName},
	{name: "own", profile: "bench-own", extender: true},
	{name: "second-plain", profile: "bench-second-plain"},
	{name: "second", profile: "sharewarden-scheduler", extender: true},
	{name: "plugin", profile: "bench-plugin", extender: true, plugin: true},
}

// Ratios reported: with the extender over without. second-vs-default compares the second
// scheduler with the cluster's scheduler as it would place the same pods without ShareWarden.
var pairs = []struct{ name, with, without string }{
	{"own", "own", "default"},
	{"second", "second", "second-plain"},
	{"second-vs-default", "second", "default"},
	{"plugin-vs-default", "plugin", "default"},
}

// batchResult is one timed batch.
type batchResult struct {
	podsPerSec float64
	// Per pod, from the scheduler's metrics: its scheduling algorithm, the framework's
	// plugins within it, and the extender's answer time (filter + prioritize) from its own.
	algorithm, framework, extender time.Duration
	extenderCalls                  float64
	// Sockets to the extender's port at the batch's end: open, and closed within the last
	// minute (TIME_WAIT): what a scheduler that did not reuse its connections would leave.
	open, closed int
}

type roundResult map[string]map[string]batchResult // scheduler -> plain|consumer -> result

func schedulingRun(b *testing.B, nodes, rounds, pods int, profileDir string) []roundResult {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	t0 := time.Now()
	progress := func(msg string) {
		fmt.Fprintf(os.Stderr, "throughput +%s: %s\n", time.Since(t0).Round(time.Second), msg)
	}
	ports, err := cluster.FreePorts(1)
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	url := "http://" + addr
	c, err := cluster.Start(ctx, cluster.Config{
		SchedulerQPS: 1000, SchedulerBurst: 2000,
		ExtraControllerManagerArgs: []string{"--kube-api-qps=200", "--kube-api-burst=400"},
		// One kwok plays every node; its leases renew every quarter of their duration, so
		// the grace period grows too.
		NodeLeaseDuration:      4 * time.Minute,
		NodeMonitorGracePeriod: 10 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Stop()
	schedulers[0].port = c.SchedulerPort()
	if err := fixture.InstallCRDs(ctx, c); err != nil { // the extender watches SharedVolumes
		b.Fatal(err)
	}
	opts := extender.NewOptions()
	opts.SecureServing.BindPort = 0
	opts.HTTPAddress = addr
	opts.Kubeconfig = c.Kubeconfig()
	done := make(chan error, 1)
	extCtx, stopExtender := context.WithCancel(ctx)
	go func() { done <- extender.Run(extCtx, opts) }()
	defer func() {
		stopExtender()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			b.Logf("extender: %v", err)
		}
	}()
	if err := waitReady(ctx, url+"/readyz", done); err != nil {
		b.Fatalf("extender not ready: %v", err)
	}
	pluginBin, err := cluster.BuildScheduler(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := grantSchedulerSharedVolumes(ctx, c); err != nil {
		b.Fatal(err)
	}
	for _, s := range schedulers[1:] {
		conf, err := benchSchedulerConfig(s, url+extender.DefaultURLPrefix)
		if err != nil {
			b.Fatal(err)
		}
		bin := "kube-scheduler"
		if s.plugin {
			bin = pluginBin
		}
		if s.port, err = c.AddSchedulerBin(ctx, "kube-scheduler-"+s.name, bin, conf); err != nil {
			b.Fatal(err)
		}
	}
	progress("plane, extender and schedulers up")

	// Three nodes first, so that the fixture makes backing PVs on those only.
	specs := make([]cluster.NodeSpec, nodes)
	for i := range specs {
		specs[i] = cluster.NodeSpec{Name: fmt.Sprintf("n%05d", i), Zone: fmt.Sprintf("zone-%d", i%3), Group: "bulk"}
	}
	if err := c.AddNodes(ctx, specs[:3]...); err != nil {
		b.Fatal(err)
	}
	if err := fixture.SetupStorage(ctx, c, fixture.Storage{Network: true, PVsPerNode: 1}); err != nil {
		b.Fatal(err)
	}
	if err := c.AddNodes(ctx, specs[3:]...); err != nil {
		b.Fatal(err)
	}
	progress(fmt.Sprintf("%d nodes Ready", nodes))
	ctlOpts := fixture.ControllerOptions(c)
	ctlOpts.LeaderElect = false
	ctl := fixture.StartController(ctx, ctlOpts)
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
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	fast, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	scrapeCfg := c.RESTConfig()
	scrapeCfg.Insecure, scrapeCfg.CAFile, scrapeCfg.CAData = true, "", nil // schedulers' own certificates
	scraper, err := rest.HTTPClientFor(scrapeCfg)
	if err != nil {
		b.Fatal(err)
	}
	var out []roundResult
	for r := range rounds {
		order := slices.Clone(schedulers)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		res := roundResult{}
		for _, s := range order {
			res[s.name] = map[string]batchResult{}
			for _, kind := range []string{"plain", "consumer"} {
				var prof func() error
				if profileDir != "" && r == 0 && kind == "consumer" {
					prof = startProfile(ctx, c, s, filepath.Join(profileDir, fmt.Sprintf("kube-scheduler-%s-%dnodes.pprof", s.name, nodes)))
				}
				br := timeBatch(b, ctx, fast, scraper, url, s, kind, pods)
				if prof != nil {
					if err := prof(); err != nil {
						b.Logf("profile of %s: %v", s.name, err)
					}
				}
				res[s.name][kind] = br
				progress(fmt.Sprintf("round %d %-12s %-8s %6.1f pods/s  per pod: algorithm %v, plugins %v, rest %v; extender %.1f calls, %v answering; sockets %d open, %d closed",
					r+1, s.name, kind, br.podsPerSec, br.algorithm.Round(time.Microsecond), br.framework.Round(time.Microsecond),
					(br.algorithm - br.framework).Round(time.Microsecond), br.extenderCalls, br.extender.Round(time.Microsecond), br.open, br.closed))
			}
		}
		for _, p := range pairs {
			progress(fmt.Sprintf("round %d ratios %s: plain %.2f, consumers %.2f", r+1, p.name,
				res[p.with]["plain"].podsPerSec/res[p.without]["plain"].podsPerSec,
				res[p.with]["consumer"].podsPerSec/res[p.without]["consumer"].podsPerSec))
		}
		out = append(out, res)
	}
	return out
}

// benchSchedulerConfig is the shipped configuration for s: its extender pointed at url over
// plain HTTP, its first profile (the consumers') renamed to s.profile and any other (the second
// scheduler's for servers) to s.profile-<i>, so that no two schedulers serve one name; without
// its extenders for second-plain.
func benchSchedulerConfig(s *benchScheduler, url string) ([]byte, error) {
	file := "kube-scheduler-config.yaml"
	if strings.HasPrefix(s.name, "second") {
		file = "second-scheduler-config.yaml"
	}
	var raw []byte
	var err error
	if s.plugin {
		file = "plugin-scheduler-config.yaml"
		raw, err = shippedFile(file)
	} else {
		raw, err = shippedConfig(file, url)
	}
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	profiles, _ := doc["profiles"].([]any)
	if len(profiles) == 0 {
		return nil, fmt.Errorf("%s: no profile", file)
	}
	for i, p := range profiles {
		name := s.profile
		if i > 0 {
			name = fmt.Sprintf("%s-%d", s.profile, i)
		}
		p.(map[string]any)["schedulerName"] = name
	}
	if !s.extender {
		delete(doc, "extenders")
	}
	return yaml.Marshal(doc)
}

// timeBatch creates n pods of kind for s at once, returns pods/s from the first create to the
// last bound and what the scheduler and the extender spent per pod, then deletes the pods.
func timeBatch(b *testing.B, ctx context.Context, cs kubernetes.Interface, scraper *http.Client, extenderURL string, s *benchScheduler, kind string, n int) batchResult {
	schedURL := fmt.Sprintf("https://127.0.0.1:%d/metrics", s.port)
	before, err := scrape(ctx, scraper, schedURL)
	if err != nil {
		b.Fatal(err)
	}
	extBefore, err := scrape(ctx, http.DefaultClient, extenderURL+extender.PathMetrics)
	if err != nil {
		b.Fatal(err)
	}
	sel := "bench=" + s.name + "-" + kind
	trackCtx, stopTracking := context.WithTimeout(ctx, 10*time.Minute)
	defer stopTracking()
	allBound := make(chan error, 1)
	go func() { allBound <- waitAllBound(trackCtx, cs, sel, n) }()
	start := time.Now()
	errs := make(chan error, n)
	sem := make(chan struct{}, 50)
	for i := range n {
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem }()
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("%s-%s-%04d", s.name, kind, i), Labels: map[string]string{"bench": s.name + "-" + kind}},
				Spec:       corev1.PodSpec{SchedulerName: s.profile, Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
			}
			if kind == "consumer" {
				p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "shared"}}}}
				if s.extender { // what the webhook adds
					one := resource.MustParse("1")
					p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{swv1.ResourceConsumer: one}
					p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{swv1.ResourceConsumer: one}
				}
			}
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
	if err := <-allBound; err != nil {
		b.Fatalf("%s: %v", sel, err)
	}
	res := batchResult{podsPerSec: float64(n) / time.Since(start).Seconds()}
	after, err := scrape(ctx, scraper, schedURL)
	if err != nil {
		b.Fatal(err)
	}
	extAfter, err := scrape(ctx, http.DefaultClient, extenderURL+extender.PathMetrics)
	if err != nil {
		b.Fatal(err)
	}
	perPod := func(sum float64) time.Duration { return time.Duration(sum / float64(n) * float64(time.Second)) }
	delta := func(a, b map[string]float64, name string, labels ...string) float64 {
		var d float64
		for k, v := range a {
			if strings.HasPrefix(k, name+"{") || k == name {
				if matchLabels(k, labels) {
					d += v - b[k]
				}
			}
		}
		return d
	}
	res.algorithm = perPod(delta(after, before, "scheduler_scheduling_algorithm_duration_seconds_sum"))
	for _, ep := range []string{"PreFilter", "Filter", "PreScore", "Score"} {
		res.framework += perPod(delta(after, before, "scheduler_framework_extension_point_duration_seconds_sum", `extension_point="`+ep+`"`, `profile="`+s.profile+`"`))
	}
	res.extender = perPod(delta(extAfter, extBefore, extender.MetricLatency+"_sum"))
	res.extenderCalls = delta(extAfter, extBefore, extender.MetricLatency+"_count") / float64(n)
	res.open, res.closed = sockets(extenderURL)

	if err := cs.CoreV1().Pods("bench").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		b.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods("bench").List(ctx, metav1.ListOptions{LabelSelector: sel})
		return err == nil && len(l.Items) == 0, nil
	}); err != nil {
		b.Fatalf("%s: pods not deleted: %v", sel, err)
	}
	time.Sleep(2 * time.Second) // the schedulers and kwok see the deletions before the next batch
	return res
}

// waitAllBound returns once n pods matching sel are bound to nodes: a watch from the start
// (read at once, so that the apiserver never drops it as too slow), listed again and watched
// anew if it closes.
func waitAllBound(ctx context.Context, cs kubernetes.Interface, sel string, n int) error {
	bound := map[string]bool{}
	for {
		l, err := cs.CoreV1().Pods("bench").List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%d of %d pods bound: %w", len(bound), n, ctx.Err())
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, p := range l.Items {
			if p.Spec.NodeName != "" {
				bound[p.Name] = true
			}
		}
		if len(bound) >= n {
			return nil
		}
		w, err := cs.CoreV1().Pods("bench").Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: l.ResourceVersion})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type != watch.Deleted && p.Spec.NodeName != "" {
				bound[p.Name] = true
				if len(bound) >= n {
					w.Stop()
					return nil
				}
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d pods bound: %w", len(bound), n, ctx.Err())
		}
	}
}

// startProfile starts a CPU profile of s's kube-scheduler over the next 10 s, into path; the
// returned function waits for it.
func startProfile(ctx context.Context, c *cluster.Cluster, s *benchScheduler, path string) func() error {
	done := make(chan error, 1)
	go func() {
		f, err := os.Create(path)
		if err != nil {
			done <- err
			return
		}
		err = c.SchedulerProfile(ctx, s.port, 10*time.Second, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		done <- err
	}()
	time.Sleep(time.Second) // the profile is running when the batch starts
	return func() error { return <-done }
}

// scrape reads a Prometheus text page into series (name{labels}) -> value.
func scrape(ctx context.Context, hc *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scraping %s: %s: %s", url, resp.Status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// sockets counts the TCP connections on 127.0.0.1 with an end at url's port: established (both
// ends are listed, each counted once), and in TIME_WAIT (closed within the last minute).
func sockets(url string) (open, closed int) {
	_, port, _ := strings.Cut(strings.TrimPrefix(url, "http://"), ":")
	p, err := strconv.Atoi(port)
	if err != nil {
		return -1, -1
	}
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1, -1
	}
	want := fmt.Sprintf(":%04X", p)
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || (!strings.HasSuffix(f[1], want) && !strings.HasSuffix(f[2], want)) {
			continue
		}
		switch f[3] {
		case "01":
			open++
		case "06":
			closed++
		}
	}
	return open / 2, closed
}

func matchLabels(series string, labels []string) bool {
	for _, l := range labels {
		if !strings.Contains(series, l) {
			return false
		}
	}
	return true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}
