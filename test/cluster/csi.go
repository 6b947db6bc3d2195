package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

// The upstream CSI processes of the plane: the sidecars that turn Kubernetes objects into CSI
// calls on a driver's socket, and the cluster-wide snapshot-controller. They are built by
// `make bins` (hack/tools/csi-*) and started on demand, after Start: a plane without a CSI
// driver needs none of them.

// snapshotCRDDir, under the bin dir, holds the snapshot CRDs `make bins` copies from
// external-snapshotter's client module.
const snapshotCRDDir = "snapshot-crds"

const (
	// sidecarQPS and sidecarBurst replace the sidecars' client limits (5/10 upstream), which
	// would set the pace of every test that provisions more than a few volumes.
	sidecarQPS   = 200
	sidecarBurst = 400
	// sidecarStartTimeout bounds the wait for a sidecar to reach its driver and serve metrics.
	sidecarStartTimeout = 60 * time.Second
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallSnapshotCRDs applies the snapshot CRDs in the bin dir's snapshot-crds/
// (snapshot.storage.k8s.io v1 VolumeSnapshotClass, VolumeSnapshotContent and VolumeSnapshot,
// and the groupsnapshot.storage.k8s.io three) and waits until every one is Established.
func (c *Cluster) InstallSnapshotCRDs(ctx context.Context) error {
	dir := filepath.Join(c.cfg.BinDir, snapshotCRDDir)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return fmt.Errorf("listing snapshot CRDs: %w", err)
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: no CRDs in %s: run `make bins`", ErrNoBinaries, dir)
	}
	crds, err := c.ApplyFiles(ctx, "", files...)
	if err != nil {
		return fmt.Errorf("applying snapshot CRDs: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.restConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, dyn, crd.GetName(), 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// waitEstablished polls the CRD name until its Established condition is True.
func waitEstablished(ctx context.Context, dyn dynamic.Interface, name string, timeout time.Duration) error {
	last := "no Established condition yet"
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		crd, err := dyn.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, ci := range conds {
			cond, _ := ci.(map[string]any)
			if cond["type"] == "Established" {
				last = fmt.Sprintf("Established=%v: %v", cond["status"], cond["message"])
				return cond["status"] == "True", nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not Established (%s): %w", name, last, err)
	}
	return nil
}

// Sidecar is one upstream CSI process (a sidecar or the snapshot-controller) running against
// the plane, logging to <work dir>/<name>.log. Cluster.Stop stops it too.
type Sidecar struct {
	proc       *process
	metricsURL string
}

// Name is the process's name, which also names its log and its client certificate.
func (s *Sidecar) Name() string { return s.proc.name }

// LogPath is the process's log file.
func (s *Sidecar) LogPath() string { return s.proc.logPath }

// PID is the process's id.
func (s *Sidecar) PID() int { return s.proc.cmd.Process.Pid }

// Check returns nil while the process runs and, once it has ended (other than by Stop), how,
// with the tail of its log.
func (s *Sidecar) Check() error {
	done, err := s.proc.exited()
	if !done {
		return nil
	}
	s.proc.mu.Lock()
	stopped := s.proc.stopped
	s.proc.mu.Unlock()
	if stopped {
		return nil
	}
	return fmt.Errorf("%s exited (%v); last log lines:\n%s", s.proc.name, err, s.proc.tail(3000))
}

// Stop ends the process (SIGTERM, SIGKILL after 5s). Stopping twice is fine.
func (s *Sidecar) Stop() { _ = s.proc.stop(5 * time.Second) }

// waitReady waits until the process serves its metrics endpoint; on failure the error carries
// the tail of its log.
func (s *Sidecar) waitReady(ctx context.Context) error {
	err := waitHTTP(ctx, s.proc, http.DefaultClient, s.metricsURL, sidecarStartTimeout)
	if err == nil {
		return nil
	}
	if done, _ := s.proc.exited(); done {
		return err // waitHTTP's error has the log's tail already
	}
	return fmt.Errorf("%s not ready: %w; last log lines:\n%s", s.proc.name, err, s.proc.tail(3000))
}

// StartSnapshotController runs the cluster-wide snapshot-controller, which binds VolumeSnapshots
// to VolumeSnapshotContents, as its own identity and without leader election. Install the
// snapshot CRDs first: it exits when they are not served within 30s. It returns once the
// controller has found the CRDs and serves metrics.
func (c *Cluster) StartSnapshotController(ctx context.Context) (*Sidecar, error) {
	s, err := c.launchSidecar("snapshot-controller", "snapshot-controller",
		"--leader-election=false",
		"--kube-api-qps="+strconv.Itoa(sidecarQPS),
		"--kube-api-burst="+strconv.Itoa(sidecarBurst),
		"--resync-period=1m",
		"--retry-interval-start=1s",
		"--retry-interval-max=30s",
		"--v=2",
	)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// SidecarConfig says which CSI sidecars StartCSISidecars runs against one driver.
type SidecarConfig struct {
	// Name distinguishes the processes, logs and client certificates of one driver's sidecars
	// from another's: "<Name>-csi-provisioner" and so on (just "csi-provisioner" when empty).
	Name string
	// Endpoint is the unix socket path of the CSI driver's controller service. The sidecars
	// wait for it to appear; StartCSISidecars waits up to a minute for them to reach it.
	Endpoint string
	// Which sidecars to run.
	Provisioner, Attacher, Resizer, Snapshotter bool
	// ProvisionerArgs are appended to csi-provisioner's flags, e.g. --extra-create-metadata, or
	// --feature-gates=Topology=true to turn topology back on.
	ProvisionerArgs []string
	// QPS and Burst are the sidecars' client limits (default 200 and 400).
	QPS   float32
	Burst int
}

// Sidecars are the sidecars StartCSISidecars started for one driver.
type Sidecars struct {
	list []*Sidecar
}

// List returns the sidecars in start order: provisioner, attacher, resizer, snapshotter.
func (ss *Sidecars) List() []*Sidecar { return append([]*Sidecar(nil), ss.list...) }

// Check returns nil while every sidecar runs, or how those that ended did.
func (ss *Sidecars) Check() error {
	var errs []error
	for _, s := range ss.list {
		errs = append(errs, s.Check())
	}
	return errors.Join(errs...)
}

// Stop ends every sidecar. Stopping twice is fine.
func (ss *Sidecars) Stop() {
	for i := len(ss.list) - 1; i >= 0; i-- {
		ss.list[i].Stop()
	}
}

// StartCSISidecars runs the selected sidecars against the CSI driver at cfg.Endpoint, each as
// its own identity, without leader election, with short retries (1s doubling up to 30s) and a
// 30s timeout on CSI calls. csi-provisioner runs with the Topology feature off unless
// ProvisionerArgs turn it on. It returns once every sidecar has reached the driver and serves
// metrics; on error it stops those it started.
func (c *Cluster) StartCSISidecars(ctx context.Context, cfg SidecarConfig) (_ *Sidecars, err error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("CSI sidecars: no driver endpoint")
	}
	qps, burst := cfg.QPS, cfg.Burst
	if qps <= 0 {
		qps = sidecarQPS
	}
	if burst <= 0 {
		burst = sidecarBurst
	}
	// Flags every sidecar has: csi-lib-utils' standardflags and its own retry and timeout.
	common := []string{
		"--csi-address=" + cfg.Endpoint,
		"--leader-election=false",
		"--kube-api-qps=" + strconv.FormatFloat(float64(qps), 'f', -1, 32),
		"--kube-api-burst=" + strconv.Itoa(burst),
		"--timeout=30s",
		"--retry-interval-start=1s",
		"--retry-interval-max=30s",
		"--v=2",
	}
	selected := []struct {
		on   bool
		bin  string
		args []string
	}{
		{cfg.Provisioner, "csi-provisioner", append([]string{"--feature-gates=Topology=false"}, cfg.ProvisionerArgs...)},
		{cfg.Attacher, "csi-attacher", nil},
		{cfg.Resizer, "csi-resizer", nil},
		{cfg.Snapshotter, "csi-snapshotter", nil},
	}
	ss := &Sidecars{}
	defer func() {
		if err != nil {
			ss.Stop()
		}
	}()
	for _, sel := range selected {
		if !sel.on {
			continue
		}
		name := sel.bin
		if cfg.Name != "" {
			name = cfg.Name + "-" + sel.bin
		}
		args := append(append([]string{}, common...), sel.args...)
		s, err := c.launchSidecar(name, sel.bin, args...)
		if err != nil {
			return nil, err
		}
		ss.list = append(ss.list, s)
	}
	if len(ss.list) == 0 {
		return nil, errors.New("CSI sidecars: none selected")
	}
	// All are started before waiting for any: they reach the driver in parallel.
	for _, s := range ss.list {
		if err := s.waitReady(ctx); err != nil {
			return nil, err
		}
	}
	return ss, nil
}

// launchSidecar starts bin from the bin dir as process name, with a kubeconfig of its own
// (user "sharewarden-test:<name>" in system:masters: the plane does not model the sidecars'
// RBAC) and its metrics on a free port of 127.0.0.1. It does not wait.
func (c *Cluster) launchSidecar(name, bin string, args ...string) (*Sidecar, error) {
	path := c.bin(bin)
	if _, err := exec.LookPath(path); err != nil {
		return nil, fmt.Errorf("%w: %s: run `make bins`", ErrNoBinaries, path)
	}
	kc, err := c.IssueClientCert(name, "sharewarden-test:"+name, "system:masters")
	if err != nil {
		return nil, err
	}
	port, err := FreePorts(1)
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port[0])
	args = append([]string{"--kubeconfig=" + kc, "--http-endpoint=" + addr}, args...)
	p, err := startProcessEnv(c.workDir, name, path, sidecarEnv(), args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return &Sidecar{proc: p, metricsURL: "http://" + addr + "/metrics"}, nil
}

// sidecarEnv is this process's environment without KUBECONFIG, which csi-provisioner would
// prefer to its --kubeconfig flag.
func sidecarEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	return env
}
