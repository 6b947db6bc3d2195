// Package extender_test runs the scheduler extender against the real kube-scheduler from
// test/cluster, configured with the shipped deploy/scheduler/kube-scheduler-config.yaml (its URL
// pointed at the extender running in-process on 127.0.0.1, plain HTTP). Pods get their markers
// from the webhook's own rules (mutators.MutatePod); kwok plays the nodes.
package extender_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

var (
	plane       *cluster.Cluster
	extenderURL string // http://127.0.0.1:<port>
)

// Nodes: two zones of two and three nodes, and a zone of one.
var nodes = []cluster.NodeSpec{
	{Name: "a1", Zone: "zone-a"}, {Name: "a2", Zone: "zone-a"},
	{Name: "b1", Zone: "zone-b"}, {Name: "b2", Zone: "zone-b"}, {Name: "b3", Zone: "zone-b"},
	{Name: "c1", Zone: "zone-c"},
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	logf.SetLogger(logr.Discard())
	if testing.Short() {
		fmt.Println("skipping e2e in -short mode")
		return 0
	}
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		return cluster.SkipE2E("extender", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ports, err := cluster.FreePorts(1)
	if err != nil {
		fmt.Println("picking a port:", err)
		return 1
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	extenderURL = "http://" + addr
	conf, err := shippedConfig("kube-scheduler-config.yaml", extenderURL+extender.DefaultURLPrefix)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	startCtx, startCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer startCancel()
	plane, err = cluster.Start(startCtx, cluster.Config{BinDir: binDir, Nodes: nodes, SchedulerConfig: conf})
	if err != nil {
		fmt.Println("starting control plane:", err)
		return 1
	}
	defer plane.Stop()
	if err := fixture.InstallCRDs(startCtx, plane); err != nil {
		fmt.Println("installing CRDs:", err)
		return 1
	}

	opts := extender.NewOptions()
	opts.SecureServing.BindPort = 0
	opts.HTTPAddress = addr
	opts.Kubeconfig = plane.Kubeconfig()
	done := make(chan error, 1)
	extCtx, stopExtender := context.WithCancel(ctx)
	go func() { done <- extender.Run(extCtx, opts) }()
	defer func() {
		stopExtender()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Println("extender:", err)
		}
	}()
	if err := waitReady(startCtx, extenderURL+"/readyz", done); err != nil {
		fmt.Println("extender not ready:", err)
		return 1
	}
	return m.Run()
}

// shippedConfig is deploy/scheduler/<file> with its extender pointed at url over plain HTTP;
// everything else as shipped.
func shippedConfig(file, url string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "deploy", "scheduler", file))
	if err != nil {
		return nil, fmt.Errorf("reading the shipped scheduler config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parsing the shipped scheduler config: %w", err)
	}
	exts, _ := doc["extenders"].([]any)
	if len(exts) != 1 {
		return nil, fmt.Errorf("shipped scheduler config %s: want one extender, got %d", file, len(exts))
	}
	e := exts[0].(map[string]any)
	e["urlPrefix"] = url
	e["enableHTTPS"] = false
	delete(e, "tlsConfig")
	return yaml.Marshal(doc)
}

func waitReady(ctx context.Context, url string, done <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("extender stopped: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", url, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
