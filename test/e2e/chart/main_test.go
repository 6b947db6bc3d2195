// Package chart_test tests charts/sharewarden: helm lint and template with the ci/ values files,
// bad values refused with a clear message, the schema and the generated values reference in
// step with values.yaml; then the rendered chart server-side applied to the real kube-apiserver
// from test/cluster, the controller and webhook run as processes configured from the rendered
// Deployments and authenticated with the chart's ServiceAccount tokens (so a missing RBAC verb
// fails), and an RWX claim taken end to end through them.
package chart_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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

// pinnedHelm is the pinned helm, with its homes in the suite's work dir.
func pinnedHelm() fixture.Helm {
	return fixture.Helm{Bin: helmBin, Home: filepath.Join(workDir, "helm")}
}

// helm runs the pinned helm and returns its stdout; stderr is in the error.
func helm(ctx context.Context, args ...string) ([]byte, error) {
	return pinnedHelm().Run(ctx, args...)
}

// render runs helm template with the values files and --set flags, and returns the objects.
func render(t *testing.T, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs, err := pinnedHelm().Template(ctx, releaseName, chartDir, releaseNamespace, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// mustFind returns the rendered object of kind and name, or fails the test.
func mustFind(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := fixture.FindObject(objs, kind, name)
	if o == nil {
		t.Fatalf("rendered chart has no %s %s", kind, name)
	}
	return o
}

// isHook tells whether an object is a helm hook (the `helm test` objects).
func isHook(o *unstructured.Unstructured) bool {
	_, ok := o.GetAnnotations()["helm.sh/hook"]
	return ok
}

func ciValues(name string) string { return filepath.Join(chartDir, "ci", name) }
