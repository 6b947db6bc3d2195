// Package demo runs ShareWarden on a local control plane and narrates what happens, for
// `sharewarden demo` and `make demo`.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/sharewarden/sharewarden/test/cluster"
)

// Options configure the demo.
type Options struct {
	// Duration is how long the plane stays up after the walkthrough; 0 means until interrupted.
	Duration time.Duration
	// BinDir holds the control-plane binaries (default: the repository's .cache/bin).
	BinDir string
	// WorkDir keeps certificates, kubeconfig and logs in a fixed place instead of a temp dir.
	WorkDir string
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.Duration, "duration", o.Duration, "how long to keep the control plane up after the walkthrough (0: until Ctrl-C)")
	fs.StringVar(&o.BinDir, "bin-dir", o.BinDir, "directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and kwok-stages/ (default: .cache/bin of the repository, or $"+cluster.BinDirEnv+")")
	fs.StringVar(&o.WorkDir, "work-dir", o.WorkDir, "keep the plane's kubeconfig, certificates and logs here (default: a temp dir removed at exit)")
}

// Run starts the plane, walks through the demo, and stops everything when ctx ends or the
// duration passes.
func Run(ctx context.Context, opts Options, out io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, "demo: "+format+"\n", args...) }
	say("starting a local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)")
	t0 := time.Now()
	ports, err := cluster.FreePorts(1)
	if err != nil {
		return err
	}
	extenderURL := fmt.Sprintf("http://127.0.0.1:%d/sharewarden", ports[0])
	c, err := cluster.Start(ctx, cluster.Config{
		BinDir:          opts.BinDir,
		WorkDir:         opts.WorkDir,
		SchedulerConfig: schedulerConfig(extenderURL),
		Nodes:           cluster.ThreeNodesTwoZones(),
		Progress:        func(msg string) { say("  %s", msg) },
	})
	if err != nil {
		return fmt.Errorf("starting control plane: %w", err)
	}
	defer func() {
		say("stopping the control plane")
		_ = c.Stop()
	}()
	say("control plane up in %s", time.Since(t0).Round(time.Millisecond))
	say("  apiserver:  %s", c.APIServerURL())
	say("  kubeconfig: %s", c.Kubeconfig())
	say("  logs:       %s/*.log", c.WorkDir())
	say("  try:        KUBECONFIG=%s kubectl get nodes -L %s", c.Kubeconfig(), cluster.ZoneLabel)

	nodes, err := c.Client().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes.Items {
		say("  node %-8s zone=%-7s ready=%v", n.Name, n.Labels[cluster.ZoneLabel], cluster.NodeReady(&n))
	}

	const ns = "demo"
	if err := c.CreateNamespace(ctx, ns, nil); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if _, err := c.Client().CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating pod: %w", err)
	}
	say("created pod %s/%s", ns, pod.Name)
	var got *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err = c.Client().CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, nil
	})
	if err != nil {
		return fmt.Errorf("pod %s/%s did not reach Running: %w", ns, pod.Name, err)
	}
	say("pod %s/%s scheduled on %s and %s (pod IP %s)", ns, pod.Name, got.Spec.NodeName, got.Status.Phase, got.Status.PodIP)

	stopStack, err := sharedVolumeWalkthrough(ctx, c, say)
	if err != nil {
		return err
	}
	defer stopStack()

	if opts.Duration > 0 {
		say("up for %s more; Ctrl-C stops it sooner", opts.Duration)
		select {
		case <-ctx.Done():
		case <-time.After(opts.Duration):
		}
	} else {
		say("running until Ctrl-C")
		<-ctx.Done()
	}
	if err := ctx.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// schedulerConfig plugs ShareWarden's extender into kube-scheduler: only pods carrying the
// webhook's markers (extended resources the scheduler itself ignores) are sent to it, and it is
// ignorable, so an extender outage never blocks scheduling.
func schedulerConfig(url string) []byte {
	return []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
extenders:
- urlPrefix: ` + url + `
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 5
  nodeCacheCapable: true
  httpTimeout: 2s
  ignorable: true
  managedResources:
  - name: sharewarden.io/rwx-consumer
    ignoredByScheduler: true
  - name: sharewarden.io/rwx-server
    ignoredByScheduler: true
`)
}
