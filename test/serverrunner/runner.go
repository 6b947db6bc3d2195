// Package serverrunner plays the kubelet for ShareWarden's NFS server pods on kwok nodes: for
// each server pod bound to a node it runs the real `sharewarden nfs-server` agent, with real
// nfs-ganesha, on a loopback address of its own, with the backing volume laid out as the PV says:
//   - a network-style disk (a CSI PV, attachable anywhere) is an ext4 image attached to a loop
//     device and mounted for the server on its node, and detached when the server stops; a
//     server that moves gets the same filesystem on another loop device (another device
//     number), as a cloud disk does on another node, so file-handle identity is really tested;
//   - a csidisk volume (a PV of the test/csidisk driver, provisioned and attached through the
//     real sidecars) is staged and published through that driver's node service of the pod's
//     node, as a kubelet does, once the external-attacher attached it there, and unpublished
//     and unstaged when the server stops;
//   - a local disk is a directory (it never moves).
//
// Each PV keeps its image or directory, so a restarted server finds its data. kwok still owns
// the pods' status; this only makes the data path real.
package serverrunner

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/loopdisk"
)

// Config says what to run and where.
type Config struct {
	Client kubernetes.Interface
	// Binary is the sharewarden binary to run as `nfs-server`.
	Binary string
	// Namespace holds the server pods and backing claims.
	Namespace string
	// WorkDir receives disks/<pv>/ (local disks) and disks/<pv>.img (network disks, mounted
	// under nodes/<node>/<pv>), and each server's runtime dir and log.
	WorkDir string
	// ExtraArgs are appended to every agent's arguments.
	ExtraArgs []string
	// Kubeconfig is the kubeconfig servers use for their lease; each node gets its own copy
	// pointing at a relay of its own, so that PartitionNode can cut that node's servers off the
	// apiserver while their NFS ports stay up. Empty turns self-fencing off.
	Kubeconfig string
	// Logf, when set, receives one line per server started or stopped.
	Logf func(format string, args ...any)
	// CSIDisk returns a client of the csidisk node service of a node (nil if it has none).
	// Backing PVs of that driver (csidisk.DriverName) are staged and published through it, as
	// by a kubelet; other CSI PVs stay static network disks this runner attaches itself.
	CSIDisk func(node string) csi.NodeClient
}

// Endpoint is where a server pod's agent serves NFS.
type Endpoint struct {
	Host    string
	Port    int
	Node    string
	DataDir string
	// Device and Dev are the loop device of a network disk and the st_dev of its mounted
	// filesystem (empty and 0 for a local disk); a move changes both.
	Device string
	Dev    uint64
}

// Addr is the endpoint's NFS address, host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// URL is a libnfs URL of path on the endpoint (NFSv4).
func (e Endpoint) URL(path string) string {
	return fmt.Sprintf("nfs://%s%s?version=4&nfsport=%d", e.Host, path, e.Port)
}

type server struct {
	ep   Endpoint
	proc *cluster.Process
	// disk is the network disk attached for this server (nil for a local disk); it is detached
	// once the agent has exited.
	disk *netDisk
	pv   string
}

// netDisk is a network disk mounted for a server: a static one this runner attached, or a
// csidisk volume its node service staged.
type netDisk struct {
	// device is its loop device and dev the st_dev of its mounted filesystem.
	device string
	dev    uint64
	// release unmounts and detaches it (or unpublishes and unstages it).
	release func(context.Context) error
}

// diskSize is the size of a network disk's (sparse) image.
const diskSize = 256 << 20

// detachTimeout bounds how long attaching a network disk waits for the server that still has
// it to exit; then that server is killed, as a cloud force-detach takes the disk from a dead node.
const detachTimeout = 60 * time.Second

// Runner runs agents for server pods until Stop.
type Runner struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	servers     map[types.UID]*server
	attached    map[string]*server // network disk (PV name) -> the server that has it attached
	lastDevice  map[string]string  // network disk (PV name) -> the loop device it last had
	names       map[string]types.UID
	nextIP      int
	proxies     map[string]*proxy
	kubeconfigs map[string]string
	partitioned map[string]bool
	// serviceAddrs maps a ClusterIP to the local address standing for it (serviceproxy.go).
	serviceAddrs     map[string]string
	serviceListeners []net.Listener
	// stopping turns the pod handlers away; handlers counts those running.
	stopping bool
	handlers sync.WaitGroup
}

// Start watches server pods and runs an agent for each one bound to a node.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("sharewarden binary: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work dir: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &Runner{cfg: cfg, cancel: cancel, servers: map[types.UID]*server{}, attached: map[string]*server{}, lastDevice: map[string]string{}, names: map[string]types.UID{}, nextIP: 10,
		proxies: map[string]*proxy{}, kubeconfigs: map[string]string{}, partitioned: map[string]bool{}, serviceAddrs: map[string]string{}}
	f := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = swv1.LabelComponent + "=" + swv1.ComponentNFSServer
		}))
	inf := f.Core().V1().Pods().Informer()
	sync := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			r.syncPod(ctx, p)
		}
	}
	// Every handler runs inside handling, so that Stop waits for those in flight and none
	// starts (or logs through a finished test's Logf) after it.
	handling := func(do func(obj any)) func(obj any) {
		return func(obj any) {
			r.mu.Lock()
			if r.stopping {
				r.mu.Unlock()
				return
			}
			r.handlers.Add(1)
			r.mu.Unlock()
			defer r.handlers.Done()
			do(obj)
		}
	}
	sync = handling(sync)
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    sync,
		UpdateFunc: func(_, obj any) { sync(obj) },
		DeleteFunc: handling(func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				r.mu.Lock()
				dead := r.partitioned[p.Spec.NodeName]
				r.mu.Unlock()
				if !dead {
					r.stopServer(p.UID)
				}
			}
		}),
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("watching server pods: %w", err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		cancel()
		return nil, fmt.Errorf("server pod informer did not sync")
	}
	return r, nil
}

// Endpoint returns where the named server pod's agent serves, once it runs.
func (r *Runner) Endpoint(podName string) (Endpoint, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.servers[r.names[podName]]
	if !ok {
		return Endpoint{}, false
	}
	return s.ep, true
}

// Stop ends every agent (SIGTERM, then SIGKILL) and the watch.
func (r *Runner) Stop() {
	r.cancel()
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.handlers.Wait()
	r.mu.Lock()
	uids := make([]types.UID, 0, len(r.servers))
	for uid := range r.servers {
		uids = append(uids, uid)
	}
	proxies := make([]*proxy, 0, len(r.proxies))
	for _, p := range r.proxies {
		proxies = append(proxies, p)
	}
	listeners := slices.Clone(r.serviceListeners)
	r.mu.Unlock()
	for _, l := range listeners {
		_ = l.Close()
	}
	for _, uid := range uids {
		r.stopServer(uid)
	}
	for _, p := range proxies {
		p.close()
	}
	r.wg.Wait()
	// Servers of partitioned nodes may have exited on their own but still hold their disk.
	r.mu.Lock()
	var held []*server
	for _, s := range r.attached {
		held = append(held, s)
	}
	r.mu.Unlock()
	for _, s := range held {
		s.proc.Kill()
		r.releaseDisk(s)
	}
}

// PartitionNode cuts node's servers off the apiserver (their NFS ports stay up) and stops
// acting as its kubelet: pods there are neither started nor stopped, as on a dead node.
func (r *Runner) PartitionNode(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partitioned[node] = true
	if p := r.proxies[node]; p != nil {
		p.setCut(true)
	}
}

// HealNode reconnects node and resumes acting as its kubelet; server processes of pods that
// no longer exist are stopped, as a returning kubelet would.
func (r *Runner) HealNode(ctx context.Context, node string) error {
	r.mu.Lock()
	delete(r.partitioned, node)
	if p := r.proxies[node]; p != nil {
		p.setCut(false)
	}
	var stale []types.UID
	for uid, s := range r.servers {
		if s.ep.Node == node {
			stale = append(stale, uid)
		}
	}
	r.mu.Unlock()
	for _, uid := range stale {
		pods, err := r.cfg.Client.CoreV1().Pods(r.cfg.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing pods: %w", err)
		}
		alive := false
		for _, p := range pods.Items {
			alive = alive || (p.UID == uid && p.DeletionTimestamp == nil)
		}
		if !alive {
			r.stopServer(uid)
		}
	}
	return nil
}

// Running tells whether the agent of a server pod (by UID) is still a live process.
func (r *Runner) Running(uid types.UID) bool {
	r.mu.Lock()
	s, ok := r.servers[uid]
	r.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case <-s.proc.Done():
		return false
	default:
		return true
	}
}

// EndpointByUID is Endpoint for a pod incarnation.
func (r *Runner) EndpointByUID(uid types.UID) (Endpoint, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.servers[uid]
	if !ok {
		return Endpoint{}, false
	}
	return s.ep, true
}

// nodeKubeconfig writes (once) node's copy of the kubeconfig, through the node's relay.
func (r *Runner) nodeKubeconfig(node string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kc, ok := r.kubeconfigs[node]; ok {
		return kc, nil
	}
	cfg, err := clientcmd.LoadFromFile(r.cfg.Kubeconfig)
	if err != nil {
		return "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	var target string
	for _, cl := range cfg.Clusters {
		u, err := url.Parse(cl.Server)
		if err != nil {
			return "", fmt.Errorf("apiserver URL: %w", err)
		}
		target = u.Host
	}
	p, err := newProxy(target)
	if err != nil {
		return "", err
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + p.addr()
	}
	path := filepath.Join(r.cfg.WorkDir, "kubeconfig-"+node)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		p.close()
		return "", fmt.Errorf("writing kubeconfig: %w", err)
	}
	r.proxies[node] = p
	r.kubeconfigs[node] = path
	return path, nil
}

func (r *Runner) syncPod(ctx context.Context, p *corev1.Pod) {
	r.mu.Lock()
	dead := r.partitioned[p.Spec.NodeName]
	r.mu.Unlock()
	if dead {
		return // a dead node's kubelet neither starts nor stops anything
	}
	if p.DeletionTimestamp != nil {
		r.stopServer(p.UID)
		return
	}
	if p.Spec.NodeName == "" {
		return
	}
	r.mu.Lock()
	_, running := r.servers[p.UID]
	r.mu.Unlock()
	if running {
		return
	}
	if err := r.startServer(ctx, p); err != nil {
		r.cfg.Logf("server %s: %v", p.Name, err)
	}
}

// backingPV returns the PV bound to the pod's backing claim.
func (r *Runner) backingPV(ctx context.Context, p *corev1.Pod) (*corev1.PersistentVolume, error) {
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := r.cfg.Client.CoreV1().PersistentVolumeClaims(p.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("backing claim: %w", err)
		}
		if pvc.Spec.VolumeName == "" {
			return nil, fmt.Errorf("backing claim %s not bound yet", pvc.Name)
		}
		pv, err := r.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("backing PV: %w", err)
		}
		return pv, nil
	}
	return nil, fmt.Errorf("pod mounts no claim")
}

// mountVolume lays out the backing volume for a server pod on its node: a local disk's
// directory, or a network disk mounted there (after the server that had it let go): a csidisk
// volume through the driver's node service, or a static one's image attached here.
func (r *Runner) mountVolume(ctx context.Context, pv *corev1.PersistentVolume, p *corev1.Pod) (string, *netDisk, error) {
	node := p.Spec.NodeName
	disks := filepath.Join(r.cfg.WorkDir, "disks")
	if pv.Spec.CSI == nil {
		dir := filepath.Join(disks, pv.Name)
		return dir, nil, os.MkdirAll(dir, 0o755)
	}
	r.waitReleased(pv.Name)
	if isCSIDisk(pv) {
		return r.mountCSIDisk(ctx, pv, p, node)
	}
	if err := os.MkdirAll(disks, 0o755); err != nil {
		return "", nil, fmt.Errorf("disks dir: %w", err)
	}
	image := filepath.Join(disks, pv.Name+".img")
	if _, err := os.Stat(image); errors.Is(err, fs.ErrNotExist) {
		if err := loopdisk.Create(ctx, image, diskSize); err != nil {
			_ = os.Remove(image)
			return "", nil, err
		}
	} else if err != nil {
		return "", nil, fmt.Errorf("disk image: %w", err)
	}
	r.mu.Lock()
	last := r.lastDevice[pv.Name]
	r.mu.Unlock()
	// Never the device it had on the node it left: a move changes the device number.
	d, err := loopdisk.Attach(ctx, image, filepath.Join(r.cfg.WorkDir, "nodes", node, pv.Name), last)
	if err != nil {
		return "", nil, err
	}
	r.mu.Lock()
	r.lastDevice[pv.Name] = d.Device
	r.mu.Unlock()
	return d.MountPoint, &netDisk{device: d.Device, dev: d.Rdev, release: d.Detach}, nil
}

// waitReleased waits for the server that has the network disk pv to exit, and releases the
// disk; a server that has not exited after detachTimeout is killed, as a cloud force-detach
// takes the disk from a dead node.
func (r *Runner) waitReleased(pv string) {
	r.mu.Lock()
	prev := r.attached[pv]
	r.mu.Unlock()
	if prev == nil {
		return
	}
	select {
	case <-prev.proc.Done():
	case <-time.After(detachTimeout):
		r.cfg.Logf("disk %s: still attached for a server on %s after %s: force-detaching (killing that server)", pv, prev.ep.Node, detachTimeout)
		prev.proc.Kill()
	}
	r.releaseDisk(prev)
}

// releaseDisk detaches s's network disk, once its agent has exited.
func (r *Runner) releaseDisk(s *server) {
	r.mu.Lock()
	if s.disk == nil || r.attached[s.pv] != s {
		r.mu.Unlock()
		return
	}
	delete(r.attached, s.pv)
	r.mu.Unlock()
	if err := s.disk.release(context.Background()); err != nil {
		r.cfg.Logf("disk %s: %v", s.pv, err)
		return
	}
	r.cfg.Logf("disk %s: detached from %s", s.pv, s.ep.Node)
}

func (r *Runner) startServer(ctx context.Context, p *corev1.Pod) (err error) {
	pv, err := r.backingPV(ctx, p)
	if err != nil {
		return err
	}
	data, disk, err := r.mountVolume(ctx, pv, p)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && disk != nil {
			if derr := disk.release(context.Background()); derr != nil {
				r.cfg.Logf("disk %s: %v", pv.Name, derr)
			}
		}
	}()
	r.mu.Lock()
	r.nextIP++
	host := fmt.Sprintf("127.0.%d.%d", 1+r.nextIP/250, 1+r.nextIP%250)
	r.mu.Unlock()
	nfsPort, err := cluster.FreePortsOn(host, 1)
	if err != nil {
		return err
	}
	httpPort, err := cluster.FreePorts(1)
	if err != nil {
		return err
	}
	dir := filepath.Join(r.cfg.WorkDir, "servers", string(p.UID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("server dir: %w", err)
	}
	// Like a kubelet, run the container's own arguments; only what this machine lays out
	// differently (where the volume is mounted, addresses, the API path) is overridden, and a
	// later flag wins.
	var args []string
	if len(p.Spec.Containers) > 0 {
		args = append(args, p.Spec.Containers[0].Args...)
	}
	if len(args) == 0 || args[0] != "nfs-server" {
		args = append([]string{"nfs-server", "--volume-id=" + p.Labels[swv1.LabelVolume]}, args...)
	}
	args = append(args,
		"--volume-dir="+data,
		"--runtime-dir="+filepath.Join(dir, "run"),
		"--nfs-address="+net.JoinHostPort(host, strconv.Itoa(nfsPort[0])),
		"--http-address=127.0.0.1:"+strconv.Itoa(httpPort[0]),
		"--ganesha-log="+filepath.Join(dir, "ganesha.log"),
	)
	if r.cfg.Kubeconfig != "" {
		kc, err := r.nodeKubeconfig(p.Spec.NodeName)
		if err != nil {
			return err
		}
		args = append(args, "--kubeconfig="+kc)
	} else {
		args = append(args, "--self-fence=false")
	}
	args = append(args, r.cfg.ExtraArgs...)
	env := append(os.Environ(), "POD_NAME="+p.Name, "POD_NAMESPACE="+p.Namespace, "POD_UID="+string(p.UID))
	proc, err := cluster.StartProcess(dir, "agent", r.cfg.Binary, env, args...)
	if err != nil {
		return err
	}
	s := &server{ep: Endpoint{Host: host, Port: nfsPort[0], Node: p.Spec.NodeName, DataDir: data}, proc: proc, disk: disk, pv: pv.Name}
	if disk != nil {
		s.ep.Device, s.ep.Dev = disk.device, disk.dev
	}
	r.mu.Lock()
	r.servers[p.UID] = s
	if disk != nil {
		r.attached[pv.Name] = s
	}
	r.names[p.Name] = p.UID
	r.mu.Unlock()
	if disk != nil {
		r.cfg.Logf("disk %s: attached on %s as %s (st_dev %d), mounted at %s", pv.Name, p.Spec.NodeName, disk.device, disk.dev, data)
	}
	r.cfg.Logf("server %s on %s: agent serving %s:%d, data %s", p.Name, p.Spec.NodeName, host, nfsPort[0], data)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-proc.Done()
		r.cfg.Logf("server %s: agent exited: %v", p.Name, proc.Err())
	}()
	return nil
}

func (r *Runner) stopServer(uid types.UID) {
	r.mu.Lock()
	s, ok := r.servers[uid]
	delete(r.servers, uid)
	for n, u := range r.names {
		if u == uid {
			delete(r.names, n)
		}
	}
	r.mu.Unlock()
	if !ok {
		return
	}
	s.proc.Stop(20 * time.Second)
	r.releaseDisk(s)
}
