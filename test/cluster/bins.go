package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries the local control plane runs; `make bins` builds them from the pins in hack/tools.
var requiredBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// ErrNoBinaries says the control-plane binaries are not built; e2e tests skip on it.
var ErrNoBinaries = errors.New("control-plane binaries not built")

// BinDirEnv overrides where the control-plane binaries are looked up.
const BinDirEnv = "SHAREWARDEN_BIN_DIR"

// DefaultBinDir returns $SHAREWARDEN_BIN_DIR, or .cache/bin at the repository root.
func DefaultBinDir() string {
	if d := os.Getenv(BinDirEnv); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".cache", "bin")
}

// RepoRoot is the ShareWarden checkout containing the working directory (found by walking up
// to hack/tools/k8s/go.mod), or the working directory itself.
func RepoRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "hack", "tools", "k8s", "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

// CheckBinaries reports, wrapping ErrNoBinaries, which binaries or stage files are missing.
func CheckBinaries(dir string) error {
	var missing []string
	for _, b := range requiredBinaries {
		if _, err := exec.LookPath(filepath.Join(dir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "kwok-stages")); err != nil || !st.IsDir() {
		missing = append(missing, "kwok-stages/")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w in %s (missing %v): run `make bins`", ErrNoBinaries, dir, missing)
	}
	return nil
}

// Binaries and files the CSI launcher (csi.go) runs; `make bins` builds them too. They are kept
// out of requiredBinaries so that a plane without them still starts for the tests that do not
// need them.
var csiBinaries = []string{"csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "snapshot-controller"}

// CheckCSIBinaries reports, wrapping ErrNoBinaries, which CSI sidecars or snapshot CRDs are
// missing from dir.
func CheckCSIBinaries(dir string) error {
	var missing []string
	for _, b := range csiBinaries {
		if _, err := exec.LookPath(filepath.Join(dir, b)); err != nil {
			missing = append(missing, b)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, snapshotCRDDir, "*.yaml")); len(m) == 0 {
		missing = append(missing, snapshotCRDDir+"/")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w in %s (missing %v): run `make bins`", ErrNoBinaries, dir, missing)
	}
	return nil
}

// RequireE2EEnv, when set (CI sets it), turns a missing prerequisite of the e2e tests from a
// skip into a failure, so that a green run always means the e2e tests ran.
const RequireE2EEnv = "SHAREWARDEN_REQUIRE_E2E"

// SkipE2E prints in one line why a package's e2e tests do not run here and returns the exit
// code for its TestMain: 0, or 1 when RequireE2EEnv is set.
func SkipE2E(pkg string, why error) int {
	msg := strings.ReplaceAll(why.Error(), "\n", "; ")
	if os.Getenv(RequireE2EEnv) != "" {
		fmt.Printf("FAIL: %s e2e required (%s is set) but: %s\n", pkg, RequireE2EEnv, msg)
		return 1
	}
	fmt.Printf("skipping %s e2e: %s\n", pkg, msg)
	return 0
}

// BuildSharewarden builds the sharewarden binary from this checkout into dir and returns its
// path, for e2e tests that run ShareWarden's roles as processes.
func BuildSharewarden(dir string) (string, error) {
	return goBuild(RepoRoot(), "./cmd/sharewarden", filepath.Join(dir, "sharewarden"), "sharewarden")
}

// BuildScheduler builds kube-scheduler with ShareWarden's scheduling-framework plugin linked in
// (hack/tools/scheduler, its own module: it links k8s.io/kubernetes) into dir and returns its
// path. It is built from this checkout each time, like BuildSharewarden, since it links the
// extender's code; the Go build cache makes a rebuild a link of about a minute.
func BuildScheduler(dir string) (string, error) {
	return goBuild(filepath.Join(RepoRoot(), "hack", "tools", "scheduler"), ".", filepath.Join(dir, "kube-scheduler-sharewarden"),
		"kube-scheduler with the ShareWarden plugin")
}

// goBuild runs `go build -o bin pkg` in module directory mod and returns bin.
func goBuild(mod, pkg, bin, what string) (string, error) {
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %w\n%s", what, err, out)
	}
	return bin, nil
}
