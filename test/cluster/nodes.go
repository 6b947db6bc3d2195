package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"golang.org/x/sync/errgroup"
)

const (
	// kwokNodeAnnotation marks a node as fake for kwok.
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	// managedByAnnotation selects the one kwok process that plays a node's kubelet.
	managedByAnnotation = "sharewarden.test/kwok-node"

	// ZoneLabel and HostnameLabel are the well-known topology labels set on every node.
	ZoneLabel     = corev1.LabelTopologyZone
	HostnameLabel = corev1.LabelHostname

	// defaultNodeLeaseSeconds is the kwok node lease duration; kwok renews every quarter of it,
	// well inside the default 20s NodeMonitorGracePeriod.
	defaultNodeLeaseSeconds = 20
)

// NodeSpec describes a fake node.
type NodeSpec struct {
	Name   string
	Zone   string
	Labels map[string]string
	// Allocatable overrides kwok's default capacity (1k CPUs, 1Ti memory, 1M pods).
	Allocatable corev1.ResourceList
	// Group, when set, puts the node under one kwok process shared by its group: cheap enough
	// for a thousand nodes, but such nodes cannot fail one by one.
	Group string
	// IP is the node's InternalIP (kwok's --node-ip, also its pods' hostIP); default
	// 10.240.x.y. A loopback address (127.0.0.x) lets a test's NFS client stand for the node's
	// kubelet by dialling from it. Not for grouped nodes, which share their group's.
	IP string
}

type nodeProc struct {
	spec  NodeSpec
	index int
	proc  *process
	// shared is set for grouped nodes: the group's one kwok, started once.
	shared bool
}

func (s NodeSpec) kwokKey() string {
	if s.Group != "" {
		return "group-" + s.Group
	}
	return s.Name
}

// ThreeNodesTwoZones is the demo's and most tests' topology.
func ThreeNodesTwoZones() []NodeSpec {
	return []NodeSpec{
		{Name: "node-a1", Zone: "zone-a"},
		{Name: "node-a2", Zone: "zone-a"},
		{Name: "node-b1", Zone: "zone-b"},
	}
}

// AddNodes creates the nodes, starts one kwok process per node (so each can fail on its own)
// and waits until all are Ready.
func (c *Cluster) AddNodes(ctx context.Context, specs ...NodeSpec) error {
	for _, s := range specs {
		if s.Name == "" {
			return fmt.Errorf("node spec without a name")
		}
		if s.IP != "" && s.Group != "" {
			return fmt.Errorf("node %s: a grouped node has its group's address; IP is for nodes of their own", s.Name)
		}
	}
	// The Node objects are created in parallel (thousands for a scale plane), then each kwok
	// process is started for its node or group.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, s := range specs {
		node := nodeObject(s)
		g.Go(func() error {
			if _, err := c.client.CoreV1().Nodes().Create(gctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating node %s: %w", s.Name, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, s := range specs {
		c.mu.Lock()
		if s.Group != "" {
			if first, ok := c.nodes[s.kwokKey()]; ok {
				c.nodes[s.Name] = &nodeProc{spec: s, index: first.index, shared: true}
				c.mu.Unlock()
				continue
			}
		}
		c.nextN++
		np := &nodeProc{spec: s, index: c.nextN, shared: s.Group != ""}
		c.nodes[s.Name] = np
		if s.Group != "" {
			c.nodes[s.kwokKey()] = np
		}
		c.mu.Unlock()
		if err := c.startKwok(np); err != nil {
			return err
		}
	}
	for _, s := range specs {
		if err := c.WaitForNode(ctx, s.Name, 60*time.Second, NodeReady); err != nil {
			return err
		}
	}
	return nil
}

// nodeObject is the Node a kwok process plays for s.
func nodeObject(s NodeSpec) *corev1.Node {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name,
			Annotations: map[string]string{
				kwokNodeAnnotation:  "fake",
				managedByAnnotation: s.kwokKey(),
			},
			Labels: map[string]string{
				HostnameLabel:             s.Name,
				corev1.LabelOSStable:      "linux",
				corev1.LabelArchStable:    "amd64",
				"type":                    "kwok",
				"node.kubernetes.io/fake": "true",
			},
		},
	}
	if s.Zone != "" {
		node.Labels[ZoneLabel] = s.Zone
	}
	for k, v := range s.Labels {
		node.Labels[k] = v
	}
	if s.Allocatable != nil {
		node.Status.Allocatable = s.Allocatable
		node.Status.Capacity = s.Allocatable
	}
	return node
}

func (c *Cluster) startKwok(np *nodeProc) error {
	kc := filepath.Join(c.workDir, "kwok.kubeconfig")
	if _, err := os.Stat(kc); err != nil {
		id, err := c.pki.ClientCert("kwok", "kwok", "system:masters")
		if err != nil {
			return err
		}
		if kc, err = c.writeKubeconfig("kwok", id); err != nil {
			return err
		}
	}
	stages, err := filepath.Glob(filepath.Join(c.cfg.BinDir, "kwok-stages", "*.yaml"))
	if err != nil || len(stages) == 0 {
		return fmt.Errorf("no kwok stage files in %s: run `make bins`", filepath.Join(c.cfg.BinDir, "kwok-stages"))
	}
	sort.Strings(stages)
	args := []string{
		"--kubeconfig=" + kc,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + managedByAnnotation + "=" + np.spec.kwokKey(),
		"--cidr=" + fmt.Sprintf("10.244.%d.0/24", np.index%250),
		"--node-ip=" + nodeIP(np),
		"--node-lease-duration-seconds=" + strconv.Itoa(c.nodeLeaseSeconds()),
	}
	for _, s := range stages {
		args = append(args, "--config="+s)
	}
	p, err := startProcess(c.workDir, "kwok-"+np.spec.Name, c.bin("kwok"), args...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	np.proc = p
	c.mu.Unlock()
	return nil
}

func nodeIP(np *nodeProc) string {
	if np.spec.IP != "" {
		return np.spec.IP
	}
	return fmt.Sprintf("10.240.%d.%d", np.index/250, np.index%250+1)
}

// FailNode kills the kwok process playing the node's kubelet, as a power loss would: heartbeats
// and lease renewals stop, and after NodeMonitorGracePeriod the node lifecycle controller marks
// the node Unknown and taints it unreachable. Pods on it stay as they were.
func (c *Cluster) FailNode(name string) error {
	c.mu.Lock()
	np, ok := c.nodes[name]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("node %s is not managed by this cluster", name)
	}
	if np.shared {
		return fmt.Errorf("node %s shares its kwok with its group and cannot fail alone", name)
	}
	if np.proc == nil {
		return fmt.Errorf("node %s has already failed", name)
	}
	np.proc.kill()
	c.mu.Lock()
	np.proc = nil
	c.mu.Unlock()
	return nil
}

// RestoreNode restarts a failed node's kwok and waits until the node is Ready again.
func (c *Cluster) RestoreNode(ctx context.Context, name string) error {
	c.mu.Lock()
	np, ok := c.nodes[name]
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("node %s is not managed by this cluster", name)
	}
	if np.proc != nil {
		return fmt.Errorf("node %s is running", name)
	}
	if err := c.startKwok(np); err != nil {
		return err
	}
	return c.WaitForNode(ctx, name, 60*time.Second, NodeReady)
}

// WaitForNode polls the node until cond holds or timeout passes.
func (c *Cluster) WaitForNode(ctx context.Context, name string, timeout time.Duration, cond func(*corev1.Node) bool) error {
	var last *corev1.Node
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // keep polling through transient errors
		}
		last = n
		return cond(n), nil
	})
	if err != nil {
		return fmt.Errorf("node %s: condition not met within %s (ready=%s, taints=%v): %w",
			name, timeout, readyStatus(last), taintKeys(last), err)
	}
	return nil
}

// NodeReady is true when the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool { return readyStatus(n) == corev1.ConditionTrue }

// NodeUnreachable is true when the node's Ready condition is Unknown and it carries the
// node-lifecycle controller's unreachable NoExecute taint.
func NodeUnreachable(n *corev1.Node) bool {
	if readyStatus(n) != corev1.ConditionUnknown {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeUnreachable && t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	if n == nil {
		return ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

func taintKeys(n *corev1.Node) []string {
	if n == nil {
		return nil
	}
	out := make([]string, 0, len(n.Spec.Taints))
	for _, t := range n.Spec.Taints {
		out = append(out, t.Key+":"+string(t.Effect))
	}
	return out
}

func (c *Cluster) nodeLeaseSeconds() int {
	if c.cfg.NodeLeaseDuration > 0 {
		return int(c.cfg.NodeLeaseDuration / time.Second)
	}
	return defaultNodeLeaseSeconds
}
