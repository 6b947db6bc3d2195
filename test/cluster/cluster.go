// Package cluster runs a real, local Kubernetes control plane for ShareWarden's e2e tests and
// demo: etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from pinned
// sources (see hack/tools), with kwok playing the kubelet of fake nodes. Everything listens on
// 127.0.0.1 on free ports, so several planes can run side by side.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// Config says what plane to start. The zero value is usable.
type Config struct {
	// BinDir holds the binaries and kwok-stages/ (default DefaultBinDir()).
	BinDir string
	// WorkDir receives certificates, kubeconfigs, etcd data and logs. Empty means a new temp
	// dir, removed by Stop unless KeepWorkDir is set.
	WorkDir     string
	KeepWorkDir bool
	// SchedulerConfig is an optional KubeSchedulerConfiguration (v1, YAML). The harness sets its
	// clientConnection.kubeconfig and turns leader election off; everything else is kept, so the
	// extender can be plugged in here.
	SchedulerConfig []byte
	// SchedulerQPS and SchedulerBurst raise kube-scheduler's client limits (defaults 50/100)
	// when set and the SchedulerConfig does not set them itself.
	SchedulerQPS   float32
	SchedulerBurst int32
	// NodeMonitorGracePeriod is how long a silent node stays Ready (default 20s).
	NodeMonitorGracePeriod time.Duration
	// NodeLeaseDuration is kwok's node lease duration (default 20s; it renews every quarter of
	// it). Planes with a thousand nodes raise it, and the grace period with it.
	NodeLeaseDuration time.Duration
	// ExtraAPIServerArgs and ExtraControllerManagerArgs are appended to those components' flags
	// (benchmarks raise --kube-api-qps so that Kubernetes' own controllers do not set the pace).
	ExtraAPIServerArgs         []string
	ExtraControllerManagerArgs []string
	// Nodes are created (and their kwok started) before Start returns.
	Nodes []NodeSpec
	// Progress, when set, receives one line per start-up step.
	Progress func(msg string)
}

// Cluster is a running control plane. Stop it; it is safe to Stop more than once.
type Cluster struct {
	cfg     Config
	workDir string
	pki     *pki
	ports   ports

	kubeconfig string
	restConfig *rest.Config
	client     kubernetes.Interface

	mu    sync.Mutex
	procs []*process           // control plane, in start order
	nodes map[string]*nodeProc // kwok per node
	nextN int

	stopOnce sync.Once
	stopErr  error
}

type ports struct {
	etcdClient, etcdPeer, apiserver, kcm, scheduler int
}

// Start brings the plane up and waits until the apiserver is ready, the default service
// account exists and every requested node is Ready. On error everything started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if cfg.BinDir == "" {
		cfg.BinDir = DefaultBinDir()
	}
	if err := CheckBinaries(cfg.BinDir); err != nil {
		return nil, err
	}
	if cfg.NodeMonitorGracePeriod == 0 {
		cfg.NodeMonitorGracePeriod = 20 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string) {}
	}
	c := &Cluster{cfg: cfg, nodes: map[string]*nodeProc{}}
	c.workDir = cfg.WorkDir
	if c.workDir == "" {
		if c.workDir, err = os.MkdirTemp("", "sharewarden-cluster-"); err != nil {
			return nil, fmt.Errorf("creating work dir: %w", err)
		}
	} else if err := os.MkdirAll(c.workDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating work dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	if err := c.pickPorts(); err != nil {
		return nil, err
	}
	if c.pki, err = newPKI(c.workDir); err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager", c.startControllerManager},
		{"kube-scheduler", c.startScheduler},
		{"default service account", func(ctx context.Context) error { return c.waitServiceAccount(ctx, "default") }},
	}
	for _, s := range steps {
		t0 := time.Now()
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		cfg.Progress(fmt.Sprintf("%s ready in %s", s.name, time.Since(t0).Round(time.Millisecond)))
	}
	if len(cfg.Nodes) > 0 {
		t0 := time.Now()
		if err := c.AddNodes(ctx, cfg.Nodes...); err != nil {
			return nil, err
		}
		cfg.Progress(fmt.Sprintf("%d kwok nodes Ready in %s", len(cfg.Nodes), time.Since(t0).Round(time.Millisecond)))
	}
	return c, nil
}

// Kubeconfig is the path of an admin kubeconfig for this plane.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a copy of the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.restConfig) }

// Client is an admin clientset.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// WorkDir holds certificates, kubeconfigs and the components' logs.
func (c *Cluster) WorkDir() string { return c.workDir }

// APIServerURL is the apiserver's https URL.
func (c *Cluster) APIServerURL() string {
	return "https://127.0.0.1:" + strconv.Itoa(c.ports.apiserver)
}

// CAFile is the cluster CA; it also signs client certificates issued by IssueClientCert.
func (c *Cluster) CAFile() string { return c.pki.CAFile }

// IssueClientCert writes a kubeconfig for user (in groups) signed by the cluster CA and returns
// its path: a way to run a component as a given identity so that RBAC applies to it.
func (c *Cluster) IssueClientCert(name, user string, groups ...string) (string, error) {
	id, err := c.pki.ClientCert(name, user, groups...)
	if err != nil {
		return "", err
	}
	return c.writeKubeconfig(name, id)
}

// Stop ends every process (kwok first, etcd last) and removes the work dir unless kept.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		nodes := make([]*nodeProc, 0, len(c.nodes))
		for name, n := range c.nodes {
			if !n.shared || name == n.spec.kwokKey() {
				nodes = append(nodes, n)
			}
		}
		procs := c.procs
		c.mu.Unlock()
		for _, n := range nodes {
			if n.proc != nil {
				_ = n.proc.stop(5 * time.Second)
			}
		}
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].stop(10 * time.Second)
		}
		if c.cfg.WorkDir == "" && !c.cfg.KeepWorkDir && c.workDir != "" {
			if err := os.RemoveAll(c.workDir); err != nil {
				c.stopErr = fmt.Errorf("removing work dir: %w", err)
			}
		}
	})
	return c.stopErr
}

// Processes lists the PIDs of every process the plane runs, by name; tests use it to check
// that Stop leaves none behind.
func (c *Cluster) Processes() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, p := range c.procs {
		out[p.name] = p.cmd.Process.Pid
	}
	for name, n := range c.nodes {
		if n.proc != nil && (!n.shared || name == n.spec.kwokKey()) {
			out["kwok-"+name] = n.proc.cmd.Process.Pid
		}
	}
	return out
}

func (c *Cluster) pickPorts() error {
	ps, err := FreePorts(5)
	if err != nil {
		return err
	}
	c.ports = ports{etcdClient: ps[0], etcdPeer: ps[1], apiserver: ps[2], kcm: ps[3], scheduler: ps[4]}
	return nil
}

func (c *Cluster) bin(name string) string {
	if filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(c.cfg.BinDir, name)
}

func (c *Cluster) addProc(name string, args ...string) (*process, error) {
	return c.addProcBin(name, name, args...)
}

// addProcBin runs binary bin as the process called name (its log: name.log).
func (c *Cluster) addProcBin(name, bin string, args ...string) (*process, error) {
	p, err := startProcess(c.workDir, name, c.bin(bin), args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.ports.etcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.ports.etcdPeer)
	p, err := c.addProc("etcd",
		"--name=default",
		"--data-dir="+filepath.Join(c.workDir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=default="+peer,
		"--unsafe-no-fsync=true", // test data only; keeps start-up and writes fast on slow disks
		"--log-level=warn",
	)
	if err != nil {
		return err
	}
	return waitHTTP(ctx, p, http.DefaultClient, client+"/health", 60*time.Second)
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", c.ports.etcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.apiserver),
		"--cert-dir=" + filepath.Join(c.workDir, "apiserver"),
		"--client-ca-file=" + c.pki.CAFile,
		"--tls-cert-file=" + c.pki.ServerCert,
		"--tls-private-key-file=" + c.pki.ServerKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.SAPub,
		"--service-account-signing-key-file=" + c.pki.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=Node,RBAC",
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	args = append(args, c.cfg.ExtraAPIServerArgs...)
	p, err := c.addProc("kube-apiserver", args...)
	if err != nil {
		return err
	}
	admin, err := c.pki.ClientCert("admin", "sharewarden-admin", "system:masters")
	if err != nil {
		return err
	}
	if c.kubeconfig, err = c.writeKubeconfig("admin", admin); err != nil {
		return err
	}
	if c.restConfig, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig); err != nil {
		return fmt.Errorf("loading admin kubeconfig: %w", err)
	}
	c.restConfig.QPS, c.restConfig.Burst = 200, 400
	if c.client, err = kubernetes.NewForConfig(c.restConfig); err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	hc, err := rest.HTTPClientFor(c.restConfig)
	if err != nil {
		return fmt.Errorf("admin http client: %w", err)
	}
	return waitHTTP(ctx, p, hc, c.APIServerURL()+"/readyz", 120*time.Second)
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	id, err := c.pki.ClientCert("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	kc, err := c.writeKubeconfig("kube-controller-manager", id)
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.ports.kcm),
		"--cert-dir=" + filepath.Join(c.workDir, "kcm"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.pki.SAKey,
		"--root-ca-file=" + c.pki.CAFile,
		"--cluster-signing-cert-file=" + c.pki.CAFile,
		"--cluster-signing-key-file=" + c.pki.CAKeyFile,
		"--node-monitor-grace-period=" + c.cfg.NodeMonitorGracePeriod.String(),
		"--node-monitor-period=2s",
		"--profiling=false",
	}
	p, err := c.addProc("kube-controller-manager", append(args, c.cfg.ExtraControllerManagerArgs...)...)
	if err != nil {
		return err
	}
	return c.waitHealthz(ctx, p, c.ports.kcm)
}

func (c *Cluster) startScheduler(ctx context.Context) error {
	_, err := c.runScheduler(ctx, "kube-scheduler", "kube-scheduler", c.cfg.SchedulerConfig, c.ports.scheduler)
	return err
}

// AddScheduler starts one more kube-scheduler, logging to name.log, with config completed as
// Config.SchedulerConfig is (the harness's kubeconfig and client limits, no leader election).
// Its profiles' schedulerNames must differ from those of every other scheduler on the plane.
// It returns the scheduler's secure port, where it also serves /debug/pprof (SchedulerProfile).
func (c *Cluster) AddScheduler(ctx context.Context, name string, config []byte) (int, error) {
	return c.AddSchedulerBin(ctx, name, "kube-scheduler", config)
}

// AddSchedulerBin is AddScheduler with another kube-scheduler build: bin is a path, or a name
// in the plane's BinDir (see BuildScheduler for the one with ShareWarden's plugin).
func (c *Cluster) AddSchedulerBin(ctx context.Context, name, bin string, config []byte) (int, error) {
	ports, err := FreePorts(1)
	if err != nil {
		return 0, err
	}
	return c.runScheduler(ctx, name, bin, config, ports[0])
}

// SchedulerPort is the secure port of the harness's own kube-scheduler.
func (c *Cluster) SchedulerPort() int { return c.ports.scheduler }

// SchedulerProfile writes a CPU profile of the kube-scheduler serving on port, taken over d,
// to w. kube-scheduler serves /debug/pprof (enableProfiling defaults to true) to identities
// the apiserver authorizes; the harness asks as its admin.
func (c *Cluster) SchedulerProfile(ctx context.Context, port int, d time.Duration, w io.Writer) error {
	cfg := rest.CopyConfig(c.restConfig)
	// The scheduler serves with a self-signed certificate of its own (see waitHealthz).
	cfg.Insecure, cfg.CAFile, cfg.CAData = true, "", nil
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("http client: %w", err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("profiling kube-scheduler: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profiling kube-scheduler: %s: %s", resp.Status, body)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("reading kube-scheduler profile: %w", err)
	}
	return nil
}

func (c *Cluster) runScheduler(ctx context.Context, name, bin string, config []byte, port int) (int, error) {
	id, err := c.pki.ClientCert("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return 0, err
	}
	kc, err := c.writeKubeconfig("kube-scheduler", id)
	if err != nil {
		return 0, err
	}
	conf, err := schedulerConfig(config, kc, c.cfg.SchedulerQPS, c.cfg.SchedulerBurst)
	if err != nil {
		return 0, err
	}
	path := filepath.Join(c.workDir, name+".yaml")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return 0, fmt.Errorf("writing scheduler config: %w", err)
	}
	p, err := c.addProcBin(name, bin,
		"--config="+path,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(c.workDir, name),
	)
	if err != nil {
		return 0, err
	}
	return port, c.waitHealthz(ctx, p, port)
}

// schedulerConfig completes a KubeSchedulerConfiguration with the harness's connection
// settings, keeping everything the caller set (profiles, extenders).
func schedulerConfig(in []byte, kubeconfig string, qps float32, burst int32) ([]byte, error) {
	doc := map[string]any{}
	if len(in) > 0 {
		if err := yaml.Unmarshal(in, &doc); err != nil {
			return nil, fmt.Errorf("parsing scheduler config: %w", err)
		}
	}
	if doc == nil {
		doc = map[string]any{}
	}
	if v, ok := doc["apiVersion"]; ok && v != "kubescheduler.config.k8s.io/v1" {
		return nil, fmt.Errorf("scheduler config: apiVersion %v, want kubescheduler.config.k8s.io/v1", v)
	}
	doc["apiVersion"] = "kubescheduler.config.k8s.io/v1"
	doc["kind"] = "KubeSchedulerConfiguration"
	cc, _ := doc["clientConnection"].(map[string]any)
	if cc == nil {
		cc = map[string]any{}
	}
	cc["kubeconfig"] = kubeconfig
	if _, set := cc["qps"]; !set && qps > 0 {
		cc["qps"] = qps
	}
	if _, set := cc["burst"]; !set && burst > 0 {
		cc["burst"] = burst
	}
	doc["clientConnection"] = cc
	doc["leaderElection"] = map[string]any{"leaderElect": false}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding scheduler config: %w", err)
	}
	return out, nil
}

func (c *Cluster) waitHealthz(ctx context.Context, p *process, port int) error {
	hc, err := rest.HTTPClientFor(c.restConfig)
	if err != nil {
		return fmt.Errorf("http client: %w", err)
	}
	// The components serve with self-signed certificates of their own; /healthz is open to
	// anyone, so skipping verification here only affects this local probe.
	hc.Transport = &http.Transport{TLSClientConfig: insecureTLS()}
	return waitHTTP(ctx, p, hc, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), 60*time.Second)
}

// waitHTTP polls url until it answers 200, the process exits, or the timeout passes.
func waitHTTP(ctx context.Context, p *process, hc *http.Client, url string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if done, werr := p.exited(); done {
			return false, fmt.Errorf("%s exited (%v); last log lines:\n%s", p.name, werr, p.tail(3000))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		_ = resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil && !errors.Is(err, context.Canceled) && last != "" {
		return fmt.Errorf("waiting for %s (last answer %q): %w; log: %s", url, last, err, p.logPath)
	}
	return err
}

func (c *Cluster) writeKubeconfig(name string, id identity) (string, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: c.APIServerURL(), CertificateAuthority: c.pki.CAFile}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificate: id.CertFile, ClientKey: id.KeyFile}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: name}
	cfg.CurrentContext = "local"
	path := filepath.Join(c.workDir, name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return path, nil
}

// CreateNamespace creates ns and waits for its default service account, without which pods
// cannot be created in it.
func (c *Cluster) CreateNamespace(ctx context.Context, ns string, labels map[string]string) error {
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	return c.waitServiceAccount(ctx, ns)
}

func (c *Cluster) waitServiceAccount(ctx context.Context, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// NodeNames lists the nodes the harness manages, sorted.
func (c *Cluster) NodeNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.nodes))
	for n, np := range c.nodes {
		if n == np.spec.Name {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
