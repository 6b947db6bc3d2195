package provisioner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// AnnotationServerSpecHash on a server pod is the hash of the pod spec the controller built it
// from (serverSpecHash). A pod whose hash differs from what the controller would build now (a
// new --server-image, --server-extra-arg, ...) is rolled: deleted gracefully and made again.
const AnnotationServerSpecHash = "sharewarden.io/server-spec-hash"

// serverSpecHash hashes what a server runs, leaving out the node affinity: that only says where
// the pod may start (fenced nodes to avoid, the node a roll pins it to) and changes with
// failovers and unfencing, which must never roll a healthy server.
func serverSpecHash(spec corev1.PodSpec) string {
	spec.Affinity = nil
	b, err := json.Marshal(spec)
	if err != nil {
		panic("marshalling a pod spec: " + err.Error()) // a PodSpec always marshals
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// RollAction is what to do with a volume's existing server pod.
type RollAction string

const (
	// RollNone keeps the pod: it is current, already going, or the fencer owns it.
	RollNone RollAction = "None"
	// RollWait keeps the outdated pod for now: another volume's server is rolling.
	RollWait RollAction = "Wait"
	// RollDelete deletes the outdated pod gracefully so the next pass makes the current one.
	RollDelete RollAction = "Delete"
)

// rollDecision decides whether pod, which the controller would now build with hash want, is
// rolled. A failover in progress (the fencer released the lease of a server that stopped) is
// left to the fencer; a pod that never got a node serves no one and is replaced at once; any
// other outdated pod waits while another volume's server rolls (othersRolling).
func rollDecision(pod *corev1.Pod, want string, failingOver, othersRolling bool) RollAction {
	switch {
	case pod == nil || pod.DeletionTimestamp != nil || failingOver:
		return RollNone
	case pod.Annotations[AnnotationServerSpecHash] == want:
		return RollNone
	case pod.Spec.NodeName == "":
		return RollDelete
	case othersRolling:
		return RollWait
	}
	return RollDelete
}

// rollStale is how long one roll may hold the gate before another volume may take it: the
// volume may have been deleted mid-roll, or its new server cannot start.
const rollStale = 10 * time.Minute

// rollGate lets one volume's server roll at a time in this controller process (the leader
// elected one). It also remembers the node the rolled pod ran on, where its RWO disk is
// attached, so the replacement is pinned there. It is held from the old pod's deletion until
// the new pod is Ready. It lives in memory: after a controller restart mid-roll, the rolling
// volume's new pod is made unpinned (the scheduler and the extender place it, as for a deleted
// pod) and the next volume may start rolling before it is Ready. The zero value is open.
type rollGate struct {
	mu    sync.Mutex
	uid   string // the volume rolling, "" when none
	node  string // the node its old server ran on
	since time.Time
}

// busy tells whether a volume other than uid holds the gate (and has not held it too long).
func (g *rollGate) busy(uid string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.uid != "" && g.uid != uid && now.Sub(g.since) < rollStale
}

// acquire takes the gate for uid, whose old server runs on node; false if another holds it.
func (g *rollGate) acquire(uid, node string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.uid != "" && g.uid != uid && now.Sub(g.since) < rollStale {
		return false
	}
	g.uid, g.node, g.since = uid, node, now
	return true
}

// pin is the node uid's new server must start on, "" when uid is not rolling.
func (g *rollGate) pin(uid string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.uid != uid {
		return ""
	}
	return g.node
}

// release frees the gate if uid holds it; true if it did.
func (g *rollGate) release(uid string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.uid != uid || uid == "" {
		return false
	}
	g.uid, g.node, g.since = "", "", time.Time{}
	return true
}
