// Package plugin is the scheduler extender's decision as a kube-scheduler framework plugin, for
// a scheduler build that links it (hack/tools/scheduler). It is a package of its own so that
// the sharewarden binary does not link the scheduling framework.
package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	fwk "k8s.io/kube-scheduler/framework"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/serving"
)

// PluginName is the name a KubeSchedulerConfiguration profile enables the plugin by.
const PluginName = "ShareWarden"

// Plugin makes the extender's decision inside kube-scheduler, as a scheduling-framework plugin
// of a scheduler build that links it (hack/tools/scheduler): the same Store, fed by the same
// informers, and the same filter and score, called per node in the scheduler's own process.
// What it saves is the HTTP extender protocol's two synchronous round trips per marked pod,
// with the pod and the node names encoded and decoded on both sides (BENCHMARKS.md,
// "Scheduler extender").
//
// Pods without the webhook's markers skip it at PreFilter and PreScore, as the extender's
// managedResources keep them from the extender. The profile must list the markers in
// NodeResourcesFit's ignoredResources, which an extender's managedResources do otherwise.
type Plugin struct {
	store *extender.Store
}

var (
	_ fwk.PreFilterPlugin = (*Plugin)(nil)
	_ fwk.FilterPlugin    = (*Plugin)(nil)
	_ fwk.PreScorePlugin  = (*Plugin)(nil)
	_ fwk.ScorePlugin     = (*Plugin)(nil)
)

// PluginArgs are the plugin's arguments in the profile's pluginConfig.
type PluginArgs struct {
	// ZoneLabel is the node label holding its zone (default topology.kubernetes.io/zone).
	ZoneLabel string `json:"zoneLabel,omitempty"`
}

// ParsePluginArgs reads the plugin's pluginConfig args (nil, or JSON as the scheduler passes an
// out-of-tree plugin's args) and checks them.
func ParsePluginArgs(obj runtime.Object) (PluginArgs, error) {
	args := PluginArgs{ZoneLabel: corev1.LabelTopologyZone}
	if u, ok := obj.(*runtime.Unknown); ok && u != nil && len(u.Raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(u.Raw))
		dec.DisallowUnknownFields() // a misspelt argument is an error, not a silent default
		if err := dec.Decode(&args); err != nil {
			return args, fmt.Errorf("%s args: %w", PluginName, err)
		}
	} else if obj != nil && !ok {
		return args, fmt.Errorf("%s args: got %T, want a JSON object", PluginName, obj)
	}
	if msgs := validation.IsQualifiedName(args.ZoneLabel); len(msgs) > 0 {
		return args, fmt.Errorf("%s args: zoneLabel %q: %v", PluginName, args.ZoneLabel, msgs)
	}
	return args, nil
}

// SyncTimeout is how long NewPlugin waits for its informers before the scheduler starts.
const SyncTimeout = 2 * time.Minute

// NewPlugin is the plugin's factory (the scheduler's frameworkruntime.PluginFactory). It starts
// the informers feeding the plugin's Store with the scheduler's own credentials; until they have
// synced, NFS servers wait, as they do on an extender that has not synced.
func NewPlugin(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := ParsePluginArgs(obj)
	if err != nil {
		return nil, err
	}
	store := extender.NewStore(args.ZoneLabel, extender.DefaultLocators())
	informers, synced, err := extender.Informers(ctx, h.KubeConfig(), store)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", PluginName, err)
	}
	log := logf.FromContext(ctx).WithValues("plugin", PluginName)
	go func() {
		if err := serving.RunInformers(ctx, informers, func() { store.SetSynced(true) }, synced...); err != nil {
			log.Error(err, "plugin informers stopped")
		}
	}()
	// kube-scheduler syncs its own informers before it schedules; the plugin's are its own, so
	// the factory waits for them, that the first pods are judged on the volumes' real state.
	// Past SyncTimeout it goes on unsynced: servers then wait, consumers are left to the
	// scheduler, as with an extender that has not synced.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, SyncTimeout, true, func(context.Context) (bool, error) {
		return store.Synced(), nil
	}); err != nil {
		log.Info("plugin informers not synced; NFS servers wait until they are", "waited", SyncTimeout.String())
	}
	return NewPluginFor(store), nil
}

// NewPluginFor returns the plugin deciding from store (tests feed it directly).
func NewPluginFor(store *extender.Store) *Plugin { return &Plugin{store: store} }

// Name implements fwk.Plugin.
func (p *Plugin) Name() string { return PluginName }

const stateKey fwk.StateKey = "sharewarden.io/decision"

// cycle is what PreFilter gathered for one pod and PreScore scored, kept in the cycle state.
type cycle struct {
	st     extender.State
	scores map[string]int64
}

// Clone implements fwk.StateData; nothing alters a cycle once written.
func (c *cycle) Clone() fwk.StateData { return c }

func readCycle(cs fwk.CycleState) (*cycle, *fwk.Status) {
	d, err := cs.Read(stateKey)
	if err != nil {
		return nil, fwk.AsStatus(fmt.Errorf("%s: no PreFilter state: %w", PluginName, err))
	}
	c, ok := d.(*cycle)
	if !ok {
		return nil, fwk.AsStatus(fmt.Errorf("%s: cycle state is %T", PluginName, d))
	}
	return c, nil
}

// PreFilter gathers once per pod what Filter and Score need; unmarked pods skip the plugin.
func (p *Plugin) PreFilter(_ context.Context, cs fwk.CycleState, pod *corev1.Pod, _ []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	role := extender.RoleOf(pod)
	if role == extender.RoleOther {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	cs.Write(stateKey, &cycle{st: p.store.Gather(pod, role, nil, nil, nil)})
	return nil, nil
}

// PreFilterExtensions implements fwk.PreFilterPlugin: the decision does not depend on other
// pods the scheduler might add or remove while preempting.
func (p *Plugin) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter is filter for one node.
func (p *Plugin) Filter(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, ni fwk.NodeInfo) *fwk.Status {
	c, s := readCycle(cs)
	if s != nil {
		return s
	}
	name := ni.Node().Name
	pass, msg, unresolvable := extender.FilterNode(name, p.store.Node(name), &c.st)
	switch {
	case pass:
		return nil
	case unresolvable:
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	return fwk.NewStatus(fwk.Unschedulable, msg)
}

// PreScore scores every node that passed, once; a consumer whose volumes have no server yet
// skips Score (every node would score 0).
func (p *Plugin) PreScore(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	c, s := readCycle(cs)
	if s != nil {
		return fwk.NewStatus(fwk.Skip) // PreFilter skipped: an unmarked pod
	}
	if c.st.Role == extender.RoleConsumer && !hasServer(c.st.Volumes) {
		return fwk.NewStatus(fwk.Skip)
	}
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Node().Name
	}
	infos := make([]*extender.NodeInfo, len(names))
	var counts []int32
	if c.st.Role == extender.RoleServer {
		counts = make([]int32, len(names))
	}
	// The volumes are PreFilter's; only the nodes that passed are looked up now.
	p.store.Nodes(names, infos, counts)
	st := c.st
	st.ServerCounts = counts
	scored := extender.Score(names, infos, &st)
	c.scores = make(map[string]int64, len(scored))
	for _, h := range scored {
		// The extender's 0..MaxExtenderPriority is scaled to the framework's 0..MaxScore, as
		// kube-scheduler scales an extender's answer.
		c.scores[h.Host] = h.Score * (fwk.MaxScore / 10)
	}
	return nil
}

func hasServer(vols []extender.Volume) bool {
	for i := range vols {
		if vols[i].ServerNode != "" && vols[i].ServerNode != vols[i].FailoverFrom {
			return true
		}
	}
	return false
}

// Score is the node's score from PreScore.
func (p *Plugin) Score(_ context.Context, cs fwk.CycleState, _ *corev1.Pod, ni fwk.NodeInfo) (int64, *fwk.Status) {
	c, s := readCycle(cs)
	if s != nil {
		return 0, s
	}
	return c.scores[ni.Node().Name], nil
}

// ScoreExtensions implements fwk.ScorePlugin: scores are already within 0..MaxScore.
func (p *Plugin) ScoreExtensions() fwk.ScoreExtensions { return nil }
