// Package extender_test runs the scheduler extender against the real kube-scheduler from
// test/cluster, configured with the shipped deploy/scheduler/kube-scheduler-config.yaml (its URL
// pointed at the extender running in-process on 127.0.0.1, plain HTTP). Pods get their markers
// from the webhook's own rules (mutators.MutatePod); kwok plays the nodes.
package extender_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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

func TestMain(m *testing.M) {
	ports, err := cluster.FreePorts(1)
	if err != nil {
		fmt.Println("picking a port:", err)
		os.Exit(1)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	extenderURL = "http://" + addr
	conf, err := shippedConfig("kube-scheduler-config.yaml", extenderURL+extender.DefaultURLPrefix)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fixture.RunSuite(m, fixture.Suite{
		Name:  "extender",
		Plane: &cluster.Config{Nodes: nodes, SchedulerConfig: conf},
		Setup: func(ctx context.Context, e *fixture.Env) error {
			plane = e.Plane
			return startExtender(ctx, e, addr)
		},
	})
}

// startExtender runs the extender in-process on addr until the tests end, and waits until it
// is ready.
func startExtender(ctx context.Context, e *fixture.Env, addr string) error {
	opts := extender.NewOptions()
	opts.SecureServing.BindPort = 0
	opts.HTTPAddress = addr
	opts.Kubeconfig = plane.Kubeconfig()
	done := make(chan error, 1)
	extCtx, stopExtender := context.WithCancel(context.Background())
	go func() { done <- extender.Run(extCtx, opts) }()
	e.Cleanup(func() {
		stopExtender()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			fmt.Println("extender:", err)
		}
	})
	if err := waitReady(ctx, extenderURL+"/readyz", done); err != nil {
		return fmt.Errorf("extender not ready: %w", err)
	}
	return nil
}

// shippedConfig is deploy/scheduler/<file> with its extender pointed at url over plain HTTP;
// everything else as shipped.
func shippedConfig(file, url string) ([]byte, error) {
	raw, err := shippedFile(file)
	if err != nil {
		return nil, err
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

// shippedFile is deploy/scheduler/<file>, as shipped.
func shippedFile(file string) ([]byte, error) {
	raw, err := os.ReadFile(filepath.Join(cluster.RepoRoot(), "deploy", "scheduler", file))
	if err != nil {
		return nil, fmt.Errorf("reading the shipped scheduler config: %w", err)
	}
	return raw, nil
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
