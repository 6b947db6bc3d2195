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
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
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

// run runs a tool (promtool) in dir and returns its stdout; stderr and stdout are in the error.
func run(t *testing.T, dir, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w\n%s%s", filepath.Base(bin), strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.Bytes(), nil
}

// pinnedHelm returns the pinned helm, with its homes in a temporary directory, or skips as tool
// does.
func pinnedHelm(t *testing.T) fixture.Helm {
	t.Helper()
	return fixture.Helm{Bin: tool(t, "helm", "hack/helm.sh"), Home: t.TempDir()}
}

// render runs helm template on the chart with extra flags and returns the objects.
func render(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	h := pinnedHelm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs, err := h.Template(ctx, "sharewarden", chartDir, "sharewarden-system", extra...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// monitoringOn turns every monitoring object of the chart on.
var monitoringOn = []string{"--set", "monitoring.podMonitors.enabled=true", "--set", "monitoring.rules.enabled=true",
	"--set", "monitoring.dashboard.enabled=true"}
