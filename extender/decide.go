package extender

import (
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// reason is why a node is filtered out.
type reason uint8

const (
	rFenced reason = iota
	rNotReady
	rUnreachable
	rFailover
	rUnknownNode
	rNotSynced
	rMissing
	numReasons
)

var reasonLabels = [numReasons]string{ReasonFenced, ReasonNotReady, ReasonUnreachable, ReasonFailover, ReasonUnknownNode, ReasonNotSynced, ReasonMissingFacts}

// Messages the scheduler shows in the pod's FailedScheduling event. They are constants so that
// a node costs no allocation to explain.
const (
	msgFenced       = "sharewarden: node is fenced (sharewarden.io/fenced)"
	msgVolumeFenced = "sharewarden: node is fenced for this volume (SharedVolume status.fencedNodes)"
	msgNotReady     = "sharewarden: node is not Ready; an NFS server must not start there"
	msgUnreachable  = "sharewarden: the backing volume cannot be reached from this node (PV node affinity or topology)"
	msgFailover     = "sharewarden: the volume's NFS server is being failed over from this node"
	msgUnknownNode  = "sharewarden: node not in the extender's cache yet"
	msgNotSynced    = "sharewarden: extender caches not synced yet; NFS servers wait"
)

// FilterResult says which of the request's nodes pass and why the others do not. Failed nodes
// may pass once the extender's caches catch up; Unresolvable ones cannot be helped by
// preempting pods.
type FilterResult struct {
	// Passed holds indexes into the request's nodes, in order.
	Passed       []int
	Failed       extenderv1.FailedNodesMap
	Unresolvable extenderv1.FailedNodesMap
	// Filtered counts the nodes filtered out, by reason.
	Filtered [numReasons]int
}

func (r *FilterResult) reject(name string, why reason, msg string, resolvable bool) {
	r.Filtered[why]++
	m := &r.Unresolvable
	if resolvable {
		m = &r.Failed
	}
	if *m == nil {
		*m = extenderv1.FailedNodesMap{}
	}
	(*m)[name] = msg
}

// filter decides which nodes the pod may run on. names are the request's node names and
// nodes[i] what is known of names[i] (nil when unknown). The result reuses buf's slice and maps
// (emptied first), so that a caller pooling them allocates nothing per request.
//
// Servers fail closed: until the caches have synced and every object the decision needs is
// known, no node passes (a server on a fenced node, or away from its data, is what fencing
// exists to prevent). Consumers fail open: they are kept off nodes known to be fenced, and
// otherwise left to the scheduler (a consumer in the wrong zone is slower, not unsafe).
func filter(names []string, nodes []*NodeInfo, st *State, buf FilterResult) FilterResult {
	clear(buf.Failed)
	clear(buf.Unresolvable)
	r := FilterResult{Passed: buf.Passed[:0], Failed: buf.Failed, Unresolvable: buf.Unresolvable}
	if cap(r.Passed) < len(names) {
		r.Passed = make([]int, 0, len(names))
	}
	switch st.Role {
	case RoleServer:
		if !st.Synced || st.Missing != "" {
			why, msg := rNotSynced, msgNotSynced
			if st.Synced {
				why, msg = rMissing, "sharewarden: "+st.Missing
			}
			if r.Failed == nil {
				r.Failed = make(extenderv1.FailedNodesMap, len(names))
			}
			for _, name := range names {
				r.reject(name, why, msg, true)
			}
			return r
		}
	nodes:
		for i, name := range names {
			n := nodes[i]
			switch {
			case n == nil:
				r.reject(name, rUnknownNode, msgUnknownNode, true)
				continue
			case n.Fenced:
				r.reject(name, rFenced, msgFenced, false)
				continue
			case !n.Ready:
				r.reject(name, rNotReady, msgNotReady, false)
				continue
			}
			for v := range st.Volumes {
				vol := &st.Volumes[v]
				if vol.fenced(name) {
					r.reject(name, rFenced, msgVolumeFenced, false)
					continue nodes
				}
				if vol.Location != nil && !vol.Location.Reaches(n) {
					r.reject(name, rUnreachable, msgUnreachable, false)
					continue nodes
				}
			}
			r.Passed = append(r.Passed, i)
		}
	case RoleConsumer:
	consumers:
		for i, name := range names {
			if !st.Synced {
				r.Passed = append(r.Passed, i)
				continue
			}
			if n := nodes[i]; n != nil && n.Fenced {
				r.reject(name, rFenced, msgFenced, false)
				continue
			}
			for v := range st.Volumes {
				vol := &st.Volumes[v]
				if vol.fenced(name) {
					r.reject(name, rFenced, msgVolumeFenced, false)
					continue consumers
				}
				if vol.FailoverFrom == name {
					r.reject(name, rFailover, msgFailover, false)
					continue consumers
				}
			}
			r.Passed = append(r.Passed, i)
		}
	default:
		for i := range names {
			r.Passed = append(r.Passed, i)
		}
	}
	return r
}

// Score weights. A server's score is a weighted sum: holding the data (6) outweighs everything
// else (at most 4); running the fewest servers (3, then 2, 1, 0 per server more than the least
// loaded candidate) comes next; the zone of most of the volume's consumers (1) breaks ties.
const (
	scoreDataNode    = 6 // the node holds the data
	scoreDataSegment = 3 // the node is in a topology segment holding the data
	scoreSpreadMax   = 3 // the node runs the fewest servers among the candidates
	scoreConsumers   = 1 // the node is in the zone where most of the volume's consumers run

	scoreServerNode = 10 // a consumer on its server's node
	scoreServerZone = 9  // a consumer in its server's zone
)

// Breakdown explains one node's score.
type Breakdown struct {
	Data, Spread, ConsumerZone int64 // servers
	ServerAffinity             int64 // consumers
}

// score ranks the nodes for the pod, each within 0..MaxExtenderPriority, into buf's storage
// (grown when too small). explain, when non-nil and as long as nodes, receives each node's
// breakdown.
func score(names []string, nodes []*NodeInfo, st *State, buf extenderv1.HostPriorityList, explain []Breakdown) extenderv1.HostPriorityList {
	out := buf[:0]
	if cap(out) < len(names) {
		out = make(extenderv1.HostPriorityList, 0, len(names))
	}
	for _, name := range names {
		out = append(out, extenderv1.HostPriority{Host: name})
	}
	if !st.Synced || (st.Role == RoleServer && st.Missing != "") {
		return out
	}
	switch st.Role {
	case RoleServer:
		minServers := int32(-1)
		for i, n := range nodes {
			if n != nil && i < len(st.ServerCounts) && (minServers < 0 || st.ServerCounts[i] < minServers) {
				minServers = st.ServerCounts[i]
			}
		}
		for i, n := range nodes {
			if n == nil {
				continue
			}
			var b Breakdown
			var data, located int64
			for v := range st.Volumes {
				vol := &st.Volumes[v]
				if vol.Location != nil {
					located++
					switch vol.Location.DataLevel(n) {
					case 2:
						data += scoreDataNode
					case 1:
						data += scoreDataSegment
					}
				}
				if vol.ConsumerZone != "" && n.Zone == vol.ConsumerZone {
					b.ConsumerZone = scoreConsumers
				}
			}
			if located > 0 {
				b.Data = data / located
			}
			if i < len(st.ServerCounts) && minServers >= 0 {
				if d := int64(st.ServerCounts[i] - minServers); d < scoreSpreadMax {
					b.Spread = scoreSpreadMax - d
				}
			}
			out[i].Score = clamp(b.Data + b.Spread + b.ConsumerZone)
			if explain != nil {
				explain[i] = b
			}
		}
	case RoleConsumer:
		for i, n := range nodes {
			var sum, counted int64
			for v := range st.Volumes {
				vol := &st.Volumes[v]
				if vol.ServerNode == "" || vol.ServerNode == vol.FailoverFrom {
					continue
				}
				counted++
				switch {
				case vol.ServerNode == names[i]:
					sum += scoreServerNode
				case n != nil && vol.ServerZone != "" && n.Zone == vol.ServerZone:
					sum += scoreServerZone
				}
			}
			if counted > 0 {
				out[i].Score = clamp(sum / counted)
				if explain != nil {
					explain[i].ServerAffinity = out[i].Score
				}
			}
		}
	}
	return out
}

// relative keeps only what can change kube-scheduler's choice, in place: it adds weight × 10 ×
// score to each node's total from its own plugins and takes the highest total, so the same
// amount added to every node changes nothing, and a node missing from the answer counts 0. The
// lowest score is taken off every node and the nodes left at 0 are dropped: nothing at all when
// all nodes score the same (a consumer whose volume has no server yet, every node in the
// server's zone, a plain pod), and for a consumer with a server, only the nodes in its zone.
// The one difference kube-scheduler can see is in ties: it breaks a tie at random between nodes
// in the answer and prefers them to tied nodes missing from it, which then need plugin scores
// exactly weight × 10 × their gap apart.
func relative(l extenderv1.HostPriorityList) extenderv1.HostPriorityList {
	if len(l) == 0 {
		return l
	}
	lo := l[0].Score
	for _, hp := range l[1:] {
		lo = min(lo, hp.Score)
	}
	out := l[:0]
	for _, hp := range l {
		if hp.Score > lo {
			out = append(out, extenderv1.HostPriority{Host: hp.Host, Score: hp.Score - lo})
		}
	}
	return out
}

func clamp(s int64) int64 {
	return max(extenderv1.MinExtenderPriority, min(s, extenderv1.MaxExtenderPriority))
}

// FilterNode is filter for one node, for deciding inside kube-scheduler (extender/plugin): n is
// what is known of the node called name (nil when unknown). It says whether the node passes and,
// if not, why and whether preempting pods could not help (unresolvable).
func FilterNode(name string, n *NodeInfo, st *State) (pass bool, msg string, unresolvable bool) {
	r := filter([]string{name}, []*NodeInfo{n}, st, FilterResult{})
	if len(r.Passed) == 1 {
		return true, "", false
	}
	if msg, ok := r.Unresolvable[name]; ok {
		return false, msg, true
	}
	return false, r.Failed[name], false
}

// Score is score for deciding inside kube-scheduler (extender/plugin): each node's 0..10 score.
func Score(names []string, nodes []*NodeInfo, st *State) extenderv1.HostPriorityList {
	return score(names, nodes, st, nil, nil)
}
