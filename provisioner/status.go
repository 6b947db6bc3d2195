package provisioner

import (
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Observation is what the controller saw of one volume in one reconcile.
type Observation struct {
	Generation int64
	// Deleting: the RWX claim is gone; the volume's objects are being removed or retained.
	Deleting bool
	// Problem, when set, is why provisioning cannot go on (e.g. the backing class is missing).
	Problem *Problem
	// Warnings are things amiss that do not stop the volume from serving (its managed class is
	// missing, its Service is being deleted): the Degraded condition lists them.
	Warnings []Problem
	// Class is the managed class as seen, or last seen while it is missing.
	Class *swv1.ClassSnapshot

	BackingClaim *corev1.PersistentVolumeClaim
	Service      *corev1.Service
	ServerPod    *corev1.Pod
	PV           *corev1.PersistentVolume
	// ClaimBound: the RWX claim is Bound to PV.
	ClaimBound bool
	Consumers  int32
	// Access is who the server admits (nil: not computed in this pass, the last one stays).
	Access *swv1.ClientAccess

	// Lease is the server's lease as the fencer saw it; LeaseExpired is its verdict that the
	// server stopped renewing. FencedNode is set once the old server is known stopped and its
	// node fenced.
	Lease        *swv1.LeaseStatus
	LeaseExpired bool
	FencedNode   string
	// UnfencedNodes are fenced nodes that have been Ready again for the settle period.
	UnfencedNodes []string

	leaseMissing bool
	// made is what this pass created, for its one Event.
	made made
}

// Problem is a reason provisioning is blocked. Fatal problems need a user to act (the claim or
// class is wrong); others may clear by themselves (a class not created yet).
type Problem struct {
	Reason, Message string
	Fatal           bool
}

// ComputeStatus derives a SharedVolume's status from an observation and the previous status.
// It is a pure function of its inputs, so every transition is unit-tested.
func ComputeStatus(obs Observation, prev swv1.SharedVolumeStatus, now metav1.Time) swv1.SharedVolumeStatus {
	st := *prev.DeepCopy()
	st.ObservedGeneration = obs.Generation
	st.ConsumerCount = obs.Consumers
	if obs.Access != nil {
		st.Access = obs.Access
	}
	st.Lease = leaseStatus(prev.Lease, obs.Lease)
	if obs.Class != nil {
		st.StorageClass = obs.Class
	}

	if obs.BackingClaim != nil {
		st.BackingClaim = &swv1.ObjectRef{Namespace: obs.BackingClaim.Namespace, Name: obs.BackingClaim.Name}
	}
	if obs.Service != nil {
		st.Service = &swv1.ObjectRef{Namespace: obs.Service.Namespace, Name: obs.Service.Name}
		st.ServiceIP = obs.Service.Spec.ClusterIP
	}
	if obs.PV != nil {
		st.VolumeName = obs.PV.Name
	}
	st.Server = swv1.ServerStatus{}
	if obs.ServerPod != nil {
		st.Server = swv1.ServerStatus{
			Pod:      &swv1.ObjectRef{Namespace: obs.ServerPod.Namespace, Name: obs.ServerPod.Name},
			NodeName: obs.ServerPod.Spec.NodeName,
			Ready:    podReady(obs.ServerPod),
		}
	}
	backingBound := obs.BackingClaim != nil && obs.BackingClaim.Status.Phase == corev1.ClaimBound

	cond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: obs.Generation, LastTransitionTime: now,
		})
	}
	cond(swv1.ConditionBackingBound, backingBound, pick(backingBound, "Bound", "Pending"), backingMessage(obs.BackingClaim))
	cond(swv1.ConditionServerReady, st.Server.Ready, pick(st.Server.Ready, "Ready", "NotReady"), serverMessage(obs.ServerPod))
	cond(swv1.ConditionBound, obs.ClaimBound, pick(obs.ClaimBound, "Bound", "NotBound"), "")

	inFailover := st.LastFailover != nil && st.LastFailover.EndTime == nil
	serving := backingBound && st.Server.Ready && obs.PV != nil && obs.ClaimBound && !obs.LeaseExpired
	switch {
	case obs.Deleting:
		st.Phase = swv1.PhaseDeleting
	case obs.Problem != nil && obs.Problem.Fatal:
		st.Phase = swv1.PhaseFailed
	case inFailover:
		f := st.LastFailover
		if obs.FencedNode != "" && f.FencedTime == nil {
			f.FencedTime = &now
		}
		switch {
		case serving && st.Server.NodeName != "" && f.FencedTime != nil:
			f.EndTime = &now
			f.Duration = &metav1.Duration{Duration: now.Sub(f.StartTime.Time)}
			f.ToNode = st.Server.NodeName
			st.Phase = swv1.PhaseReady
		case f.FencedTime != nil:
			st.Phase = swv1.PhaseFenced
		default:
			st.Phase = swv1.PhaseFailingOver
		}
	case obs.LeaseExpired && prev.Phase == swv1.PhaseReady:
		st.FailoverCount++
		st.LastFailover = &swv1.FailoverStatus{StartTime: now, FromNode: prev.Server.NodeName, Reason: "LeaseExpired"}
		st.Phase = swv1.PhaseFailingOver
		if obs.FencedNode != "" {
			st.LastFailover.FencedTime = &now
			st.Phase = swv1.PhaseFenced
		}
	case obs.Problem != nil:
		st.Phase = swv1.PhasePending
	case serving:
		st.Phase = swv1.PhaseReady
	case obs.BackingClaim != nil:
		st.Phase = swv1.PhaseProvisioning
	default:
		st.Phase = swv1.PhasePending
	}
	if obs.FencedNode != "" && !contains(st.FencedNodes, obs.FencedNode) {
		st.FencedNodes = append(st.FencedNodes, obs.FencedNode)
	}
	if len(obs.UnfencedNodes) > 0 {
		kept := st.FencedNodes[:0:0]
		for _, n := range st.FencedNodes {
			if !contains(obs.UnfencedNodes, n) || n == obs.FencedNode {
				kept = append(kept, n)
			}
		}
		st.FencedNodes = kept
		if len(kept) == 0 {
			st.FencedNodes = nil
		}
	}

	ready, reason, msg := st.Phase == swv1.PhaseReady, string(st.Phase), ""
	if obs.Problem != nil {
		reason, msg = obs.Problem.Reason, obs.Problem.Message
	}
	cond(swv1.ConditionReady, ready, reason, msg)
	if !obs.Deleting {
		degraded, reason, msg := degradedCondition(obs.Warnings)
		cond(swv1.ConditionDegraded, degraded, reason, msg)
	}
	// A newer renewal time alone is not worth a write (see LeaseStatusRefresh).
	if st.Lease != nil && prev.Lease != nil && st.Lease.Holder == prev.Lease.Holder {
		probe := st
		probe.Lease = prev.Lease
		if apiequality.Semantic.DeepEqual(probe, prev) {
			st.Lease = prev.Lease
		}
	}
	return st
}

// degradedCondition sums the warnings up: their reasons comma-separated, their messages in turn.
func degradedCondition(warnings []Problem) (bool, string, string) {
	if len(warnings) == 0 {
		return false, "AsExpected", ""
	}
	reasons, msgs := make([]string, 0, len(warnings)), make([]string, 0, len(warnings))
	for _, w := range warnings {
		if !contains(reasons, w.Reason) {
			reasons = append(reasons, w.Reason)
		}
		msgs = append(msgs, w.Message)
	}
	return true, strings.Join(reasons, ","), strings.Join(msgs, "; ")
}

// LeaseStatusRefresh is how often at most status.lease.renewTime is refreshed while the same
// holder keeps renewing, and only along with a change the status is written for anyway: servers
// renew every few seconds, and writing renewals into every volume's status would cost the
// apiserver a write per volume per renewal (and a restarted controller, which reconciles every
// volume, a write per volume). The Lease itself is exact.
const LeaseStatusRefresh = time.Minute

func leaseStatus(prev, cur *swv1.LeaseStatus) *swv1.LeaseStatus {
	if prev == nil || cur == nil || prev.Holder != cur.Holder || prev.RenewTime == nil || cur.RenewTime == nil {
		return cur
	}
	if cur.RenewTime.Sub(prev.RenewTime.Time) < LeaseStatusRefresh {
		return prev
	}
	return cur
}

func pick(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	if p == nil || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func backingMessage(pvc *corev1.PersistentVolumeClaim) string {
	if pvc == nil {
		return "backing claim not created yet"
	}
	return "backing claim " + pvc.Namespace + "/" + pvc.Name + " is " + string(pvc.Status.Phase)
}

func serverMessage(p *corev1.Pod) string {
	switch {
	case p == nil:
		return "server pod not created yet"
	case p.Spec.NodeName == "":
		return "server pod " + p.Name + " not scheduled yet"
	default:
		return "server pod " + p.Name + " on " + p.Spec.NodeName + " is " + string(p.Status.Phase)
	}
}

// ProgressHold is how long a provisioning volume's status may lag its progress (ProgressOnly) so
// that progress that comes in a burst is written once: the backing claim binding, the server pod
// scheduled and its containers starting come within a second or two of each other, and each
// would be a status write of its own. Phase changes, problems, warnings, fencing, and the server
// becoming Ready (what CreateVolume waits for) are never held.
const ProgressHold = 2 * time.Second

// ProgressOnly tells whether st differs from prev only in a provisioning volume's progress: both
// are Provisioning, Servable does not change, and what changed is only which objects exist,
// where the server is, the backing claim's, server's and claim's conditions, and the consumer
// count. Such a write may wait up to ProgressHold.
func ProgressOnly(prev, st swv1.SharedVolumeStatus) bool {
	if prev.Phase != swv1.PhaseProvisioning || st.Phase != swv1.PhaseProvisioning || Servable(prev) != Servable(st) {
		return false
	}
	probe := *st.DeepCopy()
	probe.BackingClaim, probe.Service, probe.ServiceIP, probe.VolumeName = prev.BackingClaim, prev.Service, prev.ServiceIP, prev.VolumeName
	probe.Server, probe.ConsumerCount = prev.Server, prev.ConsumerCount
	probe.Conditions = withoutProgress(st.Conditions)
	base := prev
	base.Conditions = withoutProgress(prev.Conditions)
	return apiequality.Semantic.DeepEqual(probe, base)
}

// withoutProgress is conds without the conditions a provisioning volume's progress changes.
func withoutProgress(conds []metav1.Condition) []metav1.Condition {
	progress := []string{swv1.ConditionBackingBound, swv1.ConditionServerReady, swv1.ConditionBound}
	return slices.DeleteFunc(slices.Clone(conds), func(c metav1.Condition) bool { return slices.Contains(progress, c.Type) })
}

// progressHold remembers, per volume, since when a progress-only status change has waited.
type progressHold struct {
	mu    sync.Mutex
	since map[types.UID]time.Time
}

// wait says how much longer volume uid's progress-only change may wait (0: write it now),
// counting from the first pass that held it.
func (h *progressHold) wait(uid types.UID, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since == nil {
		h.since = map[types.UID]time.Time{}
	}
	first, ok := h.since[uid]
	if !ok {
		h.since[uid] = now
		return ProgressHold
	}
	return max(0, first.Add(ProgressHold).Sub(now))
}

// done forgets uid once its status is written.
func (h *progressHold) done(uid types.UID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.since, uid)
}
