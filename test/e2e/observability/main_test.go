// Package observability_test checks ShareWarden's monitoring against its code: the metrics the
// components really register (gathered from their registries, not listed by hand) against the
// alert rules, the Grafana dashboard and docs/observability.md; the alert rules with the pinned
// promtool (`promtool check rules`, and `promtool test rules` on testdata/alerts_test.yaml); and
// the chart's PodMonitors, PrometheusRule and dashboard ConfigMap as helm renders them.
//
// The tests that need helm or promtool (hack/helm.sh, hack/promtool.sh; `make test` builds both)
// skip with one line when they are missing, and fail instead when SHAREWARDEN_REQUIRE_E2E is set.
package observability_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/sharewarden/sharewarden/test/cluster"
)

var (
	root     = cluster.RepoRoot()
	chartDir = filepath.Join(root, "charts", "sharewarden")
)

// tool returns the path of a pinned tool in the bin dir, or skips (fails under
// SHAREWARDEN_REQUIRE_E2E) saying how to build it.
func tool(t *testing.T, name, script string) string {
	t.Helper()
	bin := filepath.Join(cluster.DefaultBinDir(), name)
	if _, err := exec.LookPath(bin); err != nil {
		msg := fmt.Sprintf("%s not built in %s: run %s", name, cluster.DefaultBinDir(), script)
		if os.Getenv(cluster.RequireE2EEnv) != "" {
			t.Fatalf("%s is set but %s", cluster.RequireE2EEnv, msg)
		}
		t.Skip("skipping: " + msg)
	}
	return bin
}

// run runs a tool and returns its stdout; stderr and stdout are in the error.
func run(t *testing.T, dir, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	work := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+filepath.Join(work, "config"),
		"HELM_CACHE_HOME="+filepath.Join(work, "cache"), "HELM_DATA_HOME="+filepath.Join(work, "data"))
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.Bytes(), nil
}

// render runs helm template on the chart with extra flags and returns the objects.
func render(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	helm := tool(t, "helm", "hack/helm.sh")
	out, err := run(t, root, helm, append([]string{"template", "sharewarden", chartDir, "--namespace", "sharewarden-system"}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decoding rendered chart: %v", err)
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

func ofKind(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// monitoringOn turns every monitoring object of the chart on.
var monitoringOn = []string{"--set", "monitoring.podMonitors.enabled=true", "--set", "monitoring.rules.enabled=true",
	"--set", "monitoring.dashboard.enabled=true"}
