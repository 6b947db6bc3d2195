package extender

import (
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Facts answers, from the extender's own caches, what a request needs. *Store implements it;
// tests may use any other implementation.
type Facts interface {
	// Synced tells whether the caches have synced.
	Synced() bool
	// Gather returns what a decision about pod (of role) needs. names are the request's nodes:
	// when nodes is non-nil it receives what is known of names[i] at nodes[i]; when counts is
	// non-nil it receives the number of NFS servers bound to names[i] at counts[i].
	Gather(pod *corev1.Pod, role Role, names []string, nodes []*NodeInfo, counts []int32) State
}

// Store holds the facts the extender decides on, kept up to date by informer event handlers
// (or by tests) through its Upsert and Delete methods. Derived facts (node summaries, compiled
// PV locations, server counts per node, consumers per claim) are computed on change, so that
// a request only looks them up.
type Store struct {
	zoneLabel string
	locators  []DataLocator
	synced    atomic.Bool

	mu sync.RWMutex
	// nodes holds, by name, each node's summary and the number of server pods bound to it, so
	// that a request looks a node up once.
	nodes   map[string]*nodeEntry
	claims  map[types.NamespacedName]*corev1.PersistentVolumeClaim
	pvs     map[string]*Location
	volumes map[types.NamespacedName]*swv1.SharedVolume
	pods    map[types.NamespacedName]podEntry
	// serverNode is where each volume's server pod (by claim UID) is bound.
	serverNode map[string]string
	// consumers: claim -> consumer pod -> node.
	consumers map[types.NamespacedName]map[types.NamespacedName]string

	// zones caches consumerZone per claim; written under zmu while mu is held for reading,
	// invalidated under mu's write lock when a claim's consumers or a node's zone change.
	zmu   sync.Mutex
	zones map[types.NamespacedName]string
}

type nodeEntry struct {
	info    *NodeInfo // nil while only pods name the node
	servers int32
}

func (s *Store) entry(name string) *nodeEntry {
	e := s.nodes[name]
	if e == nil {
		e = &nodeEntry{}
		s.nodes[name] = e
	}
	return e
}

func (s *Store) info(name string) *NodeInfo {
	if e := s.nodes[name]; e != nil {
		return e.info
	}
	return nil
}

type podEntry struct {
	role      Role
	node      string
	volumeUID string                 // server: the claim UID it serves
	claims    []types.NamespacedName // consumer: the claims it mounts
}

// NewStore returns an empty store; zoneLabel names the nodes' zone label and locators find
// backing volumes' data.
func NewStore(zoneLabel string, locators []DataLocator) *Store {
	return &Store{
		zoneLabel:  zoneLabel,
		locators:   locators,
		nodes:      map[string]*nodeEntry{},
		claims:     map[types.NamespacedName]*corev1.PersistentVolumeClaim{},
		pvs:        map[string]*Location{},
		volumes:    map[types.NamespacedName]*swv1.SharedVolume{},
		pods:       map[types.NamespacedName]podEntry{},
		serverNode: map[string]string{},
		consumers:  map[types.NamespacedName]map[types.NamespacedName]string{},
		zones:      map[types.NamespacedName]string{},
	}
}

// SetSynced records whether the informer caches have synced.
func (s *Store) SetSynced(v bool) { s.synced.Store(v) }

// Synced implements Facts.
func (s *Store) Synced() bool { return s.synced.Load() }

// UpsertNode records a node.
func (s *Store) UpsertNode(n *corev1.Node) {
	info := NewNodeInfo(n, s.zoneLabel)
	s.mu.Lock()
	e := s.entry(n.Name)
	if e.info == nil || e.info.Zone != info.Zone {
		s.clearZones()
	}
	e.info = info
	s.mu.Unlock()
}

// DeleteNode forgets a node.
func (s *Store) DeleteNode(name string) {
	s.mu.Lock()
	if e := s.nodes[name]; e != nil {
		e.info = nil
		if e.servers == 0 {
			delete(s.nodes, name)
		}
	}
	s.clearZones()
	s.mu.Unlock()
}

// clearZones forgets every cached consumer zone; mu is held for writing.
func (s *Store) clearZones() {
	s.zmu.Lock()
	clear(s.zones)
	s.zmu.Unlock()
}

// forgetZone forgets claim's cached consumer zone; mu is held for writing.
func (s *Store) forgetZone(claim types.NamespacedName) {
	s.zmu.Lock()
	delete(s.zones, claim)
	s.zmu.Unlock()
}

// UpsertClaim records a claim.
func (s *Store) UpsertClaim(c *corev1.PersistentVolumeClaim) {
	s.mu.Lock()
	s.claims[types.NamespacedName{Namespace: c.Namespace, Name: c.Name}] = c
	s.mu.Unlock()
}

// DeleteClaim forgets a claim.
func (s *Store) DeleteClaim(key types.NamespacedName) {
	s.mu.Lock()
	delete(s.claims, key)
	s.mu.Unlock()
}

// UpsertPV records a PV's location.
func (s *Store) UpsertPV(pv *corev1.PersistentVolume) {
	loc := Locate(pv, s.locators)
	s.mu.Lock()
	s.pvs[pv.Name] = loc
	s.mu.Unlock()
}

// DeletePV forgets a PV.
func (s *Store) DeletePV(name string) {
	s.mu.Lock()
	delete(s.pvs, name)
	s.mu.Unlock()
}

// UpsertSharedVolume records a SharedVolume.
func (s *Store) UpsertSharedVolume(sv *swv1.SharedVolume) {
	s.mu.Lock()
	s.volumes[types.NamespacedName{Namespace: sv.Namespace, Name: sv.Name}] = sv
	s.mu.Unlock()
}

// DeleteSharedVolume forgets a SharedVolume.
func (s *Store) DeleteSharedVolume(key types.NamespacedName) {
	s.mu.Lock()
	delete(s.volumes, key)
	s.mu.Unlock()
}

// UpsertPod records where a marked pod is bound. Unmarked, unbound and finished pods are
// forgotten.
func (s *Store) UpsertPod(p *corev1.Pod) {
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	role := RoleOf(p)
	if role == RoleOther || p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil && role == RoleServer {
		// A deleting server no longer counts: its replacement must be free to go anywhere.
		s.DeletePod(key)
		return
	}
	e := podEntry{role: role, node: p.Spec.NodeName}
	if role == RoleServer {
		e.volumeUID = p.Labels[swv1.LabelClaimUID]
	} else {
		e.claims = podClaims(p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetPod(key)
	s.pods[key] = e
	switch role {
	case RoleServer:
		s.entry(e.node).servers++
		if e.volumeUID != "" {
			s.serverNode[e.volumeUID] = e.node
		}
	case RoleConsumer:
		for _, c := range e.claims {
			m := s.consumers[c]
			if m == nil {
				m = map[types.NamespacedName]string{}
				s.consumers[c] = m
			}
			m[key] = e.node
			s.forgetZone(c)
		}
	}
}

// DeletePod forgets a pod.
func (s *Store) DeletePod(key types.NamespacedName) {
	s.mu.Lock()
	s.forgetPod(key)
	s.mu.Unlock()
}

func (s *Store) forgetPod(key types.NamespacedName) {
	e, ok := s.pods[key]
	if !ok {
		return
	}
	delete(s.pods, key)
	switch e.role {
	case RoleServer:
		if n := s.nodes[e.node]; n != nil {
			if n.servers--; n.servers <= 0 && n.info == nil {
				delete(s.nodes, e.node)
			}
		}
		if e.volumeUID != "" && s.serverNode[e.volumeUID] == e.node {
			delete(s.serverNode, e.volumeUID)
		}
	case RoleConsumer:
		for _, c := range e.claims {
			if m := s.consumers[c]; m != nil {
				delete(m, key)
				s.forgetZone(c)
				if len(m) == 0 {
					delete(s.consumers, c)
				}
			}
		}
	}
}

// podClaims are the claims a pod's volumes name, generic ephemeral volumes' included.
func podClaims(p *corev1.Pod) []types.NamespacedName {
	var out []types.NamespacedName
	for _, name := range swv1.PodClaimNames(p) {
		out = append(out, types.NamespacedName{Namespace: p.Namespace, Name: name})
	}
	return out
}

// Gather implements Facts.
func (s *Store) Gather(pod *corev1.Pod, role Role, names []string, nodes []*NodeInfo, counts []int32) State {
	st := State{Role: role, Synced: s.Synced(), ServerCounts: counts}
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.lookupNodes(names, nodes, counts)
	switch role {
	case RoleServer:
		s.gatherServer(pod, &st)
	case RoleConsumer:
		s.gatherConsumer(pod, &st)
	}
	return st
}

func (s *Store) gatherServer(pod *corev1.Pod, st *State) {
	key := types.NamespacedName{Namespace: pod.Labels[swv1.LabelClaimNamespace], Name: pod.Labels[swv1.LabelClaimName]}
	if key.Namespace == "" || key.Name == "" {
		st.Missing = "server pod lacks the " + swv1.LabelClaimNamespace + " and " + swv1.LabelClaimName + " labels"
		return
	}
	sv := s.volumes[key]
	if sv == nil {
		st.Missing = "SharedVolume " + key.String() + " not found"
		return
	}
	if uid := pod.Labels[swv1.LabelClaimUID]; uid != "" && sv.Spec.ClaimUID != uid {
		st.Missing = "SharedVolume " + key.String() + " belongs to another claim than the server's"
		return
	}
	vol := s.volumeOf(key, sv)
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		ck := types.NamespacedName{Namespace: pod.Namespace, Name: v.PersistentVolumeClaim.ClaimName}
		c := s.claims[ck]
		if c == nil {
			st.Missing = "backing claim " + ck.String() + " not found"
			return
		}
		if c.Spec.VolumeName == "" {
			continue // not bound yet: the scheduler's volume binding picks where
		}
		loc := s.pvs[c.Spec.VolumeName]
		if loc == nil {
			st.Missing = "PersistentVolume " + c.Spec.VolumeName + " of backing claim " + ck.String() + " not found"
			return
		}
		if vol.Location == nil {
			vol.Location = loc
		} else {
			vol.Location = &Location{
				Reach:        append(append([]*NodeSelector(nil), vol.Location.Reach...), loc.Reach...),
				DataNodes:    append(append([]string(nil), vol.Location.DataNodes...), loc.DataNodes...),
				DataSegments: append(append([]Segment(nil), vol.Location.DataSegments...), loc.DataSegments...),
			}
		}
	}
	vol.ConsumerZone = s.consumerZone(key)
	st.Volumes = []Volume{vol}
}

func (s *Store) gatherConsumer(pod *corev1.Pod, st *State) {
	var missing string
	add := func(key types.NamespacedName) {
		sv := s.volumes[key]
		if sv == nil {
			missing = "no SharedVolume for claim " + key.String()
			return
		}
		if c := s.claims[key]; c != nil && string(c.UID) != sv.Spec.ClaimUID {
			missing = "SharedVolume " + key.String() + " belongs to another claim"
			return
		}
		st.Volumes = append(st.Volumes, s.volumeOf(key, sv))
	}
	for _, key := range podClaims(pod) {
		add(key)
	}
	if len(st.Volumes) == 0 {
		st.Missing = missing
	}
}

// volumeOf summarises sv; the server's node comes from the bound server pod when known, from
// the SharedVolume's status otherwise.
func (s *Store) volumeOf(key types.NamespacedName, sv *swv1.SharedVolume) Volume {
	v := Volume{Claim: key, Phase: sv.Status.Phase, FencedNodes: sv.Status.FencedNodes, ServerNode: sv.Status.Server.NodeName}
	if n, ok := s.serverNode[sv.Spec.ClaimUID]; ok {
		v.ServerNode = n
	}
	if (v.Phase == swv1.PhaseFailingOver || v.Phase == swv1.PhaseFenced) && sv.Status.LastFailover != nil {
		v.FailoverFrom = sv.Status.LastFailover.FromNode
	}
	if n := s.info(v.ServerNode); n != nil {
		v.ServerZone = n.Zone
	}
	return v
}

// consumerZone is the zone where most of the claim's bound consumers run (ties: the first in
// name order, so that the answer is stable). It is computed once per change; mu is held.
func (s *Store) consumerZone(claim types.NamespacedName) string {
	s.zmu.Lock()
	z, ok := s.zones[claim]
	s.zmu.Unlock()
	if ok {
		return z
	}
	z = s.countConsumerZones(claim)
	s.zmu.Lock()
	s.zones[claim] = z
	s.zmu.Unlock()
	return z
}

func (s *Store) countConsumerZones(claim types.NamespacedName) string {
	var zones [8]struct {
		zone string
		n    int
	}
	seen := zones[:0]
	for _, node := range s.consumers[claim] {
		n := s.info(node)
		if n == nil || n.Zone == "" {
			continue
		}
		found := false
		for i := range seen {
			if seen[i].zone == n.Zone {
				seen[i].n++
				found = true
				break
			}
		}
		if !found {
			seen = append(seen, struct {
				zone string
				n    int
			}{n.Zone, 1})
		}
	}
	best := ""
	bestN := 0
	for _, z := range seen {
		if z.n > bestN || z.n == bestN && z.zone < best {
			best, bestN = z.zone, z.n
		}
	}
	return best
}

// Nodes is Gather's node lookups alone: nodes[i] receives what is known of names[i], counts[i]
// the number of NFS servers bound to it (either may be nil), for a caller that holds the rest of
// a State from an earlier Gather (the scheduler plugin's PreScore).
func (s *Store) Nodes(names []string, nodes []*NodeInfo, counts []int32) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.lookupNodes(names, nodes, counts)
}

// lookupNodes fills nodes and counts (either may be nil) for names; mu is held.
func (s *Store) lookupNodes(names []string, nodes []*NodeInfo, counts []int32) {
	if nodes == nil && counts == nil {
		return
	}
	for i, n := range names {
		var info *NodeInfo
		var servers int32
		if e := s.nodes[n]; e != nil {
			info, servers = e.info, e.servers
		}
		if nodes != nil {
			nodes[i] = info
		}
		if counts != nil {
			counts[i] = servers
		}
	}
}

// Node returns what is known of the node called name (nil when unknown).
func (s *Store) Node(name string) *NodeInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.info(name)
}
