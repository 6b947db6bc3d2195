// Package chart_test tests charts/sharewarden: helm lint and template with the ci/ values files,
// bad values refused with a clear message, the schema and the generated values reference in
// step with values.yaml; then the rendered chart server-side applied to the real kube-apiserver
// from test/cluster, the controller and webhook run as processes configured from the rendered
// Deployments and authenticated with the chart's ServiceAccount tokens (so a missing RBAC verb
// fails), and an RWX claim taken end to end through them.
package chart_test

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
	"github.com/sharewarden/sharewarden/test/fixture"
)

const (
	// releaseNamespace is where the chart is installed: the controller's and webhook's
	// defaults, and the fixture's system namespace.
	releaseNamespace = "sharewarden-system"
	releaseName      = "sharewarden"
)

var (
	root      = cluster.RepoRoot()
	chartDir  = filepath.Join(root, "charts", "sharewarden")
	helmBin   string
	binDir    string
	workDir   string
	sharewBin string // the sharewarden binary, built once
)

func TestMain(m *testing.M) {
	binDir = cluster.DefaultBinDir()
	helmBin = filepath.Join(binDir, "helm")
	fixture.RunSuite(m, fixture.Suite{
		Name:     "chart",
		Tools:    []string{helmBin},
		Binaries: true, // each install test starts a plane of its own
		Setup:    func(_ context.Context, e *fixture.Env) error { workDir = e.Dir; return nil },
	})
}

// buildSharewarden builds cmd/sharewarden once per test binary.
func buildSharewarden(t *testing.T) string {
	t.Helper()
	if sharewBin != "" {
		return sharewBin
	}
	bin, err := cluster.BuildSharewarden(workDir)
	if err != nil {
		t.Fatal(err)
	}
	sharewBin = bin
	return bin
}

// helm runs the pinned helm and returns its stdout; stderr is in the error.
func helm(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, helmBin, args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	// No user configuration, repositories or caches leak in.
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+filepath.Join(workDir, "helm-config"),
		"HELM_CACHE_HOME="+filepath.Join(workDir, "helm-cache"), "HELM_DATA_HOME="+filepath.Join(workDir, "helm-data"))
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// render runs helm template with the values files and --set flags, and returns the objects.
func render(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := helm(ctx, append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(out)
	if err != nil {
		t.Fatalf("decoding rendered chart: %v", err)
	}
	return objs
}

func decode(manifest []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return out, err
		}
		if len(obj.Object) > 0 {
			out = append(out, obj)
		}
	}
}

// find returns the rendered object of kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := find(objs, kind, name)
	if o == nil {
		t.Fatalf("rendered chart has no %s %s", kind, name)
	}
	return o
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

// isHook tells whether an object is a helm hook (the `helm test` objects).
func isHook(o *unstructured.Unstructured) bool {
	_, ok := o.GetAnnotations()["helm.sh/hook"]
	return ok
}

func ciValues(name string) string { return filepath.Join(chartDir, "ci", name) }
