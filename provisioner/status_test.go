package provisioner

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func boundBacking() *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-u"},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

func serverPod(node string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-u"},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func serving(node string) Observation {
	return Observation{
		BackingClaim: boundBacking(),
		Service:      &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-u"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10"}},
		ServerPod:    serverPod(node, true),
		PV:           &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-u"}},
		ClaimBound:   true,
		Consumers:    3,
	}
}

func TestComputeStatusPhases(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	notReady := serving("n1")
	notReady.ServerPod = serverPod("n1", false)
	noPV := serving("n1")
	noPV.PV, noPV.ClaimBound = nil, false
	for _, tc := range []struct {
		name      string
		obs       Observation
		prevPhase swv1.Phase
		want      swv1.Phase
		wantReady metav1.ConditionStatus
	}{
		{"nothing yet", Observation{}, "", swv1.PhasePending, metav1.ConditionFalse},
		{"recoverable problem", Observation{Problem: &Problem{Reason: ReasonBackingClassMissing}}, "", swv1.PhasePending, metav1.ConditionFalse},
		{"fatal problem", Observation{Problem: &Problem{Reason: ReasonInvalidClass, Fatal: true}}, swv1.PhasePending, swv1.PhaseFailed, metav1.ConditionFalse},
		{"backing claim only", Observation{BackingClaim: boundBacking()}, swv1.PhasePending, swv1.PhaseProvisioning, metav1.ConditionFalse},
		{"server not ready", notReady, swv1.PhaseProvisioning, swv1.PhaseProvisioning, metav1.ConditionFalse},
		{"server ready, no PV yet", noPV, swv1.PhaseProvisioning, swv1.PhaseProvisioning, metav1.ConditionFalse},
		{"serving", serving("n1"), swv1.PhaseProvisioning, swv1.PhaseReady, metav1.ConditionTrue},
		{"deleting wins", Observation{Deleting: true}, swv1.PhaseReady, swv1.PhaseDeleting, metav1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := ComputeStatus(tc.obs, swv1.SharedVolumeStatus{Phase: tc.prevPhase}, now)
			if st.Phase != tc.want {
				t.Errorf("phase %s, want %s", st.Phase, tc.want)
			}
			c := meta.FindStatusCondition(st.Conditions, swv1.ConditionReady)
			if c == nil || c.Status != tc.wantReady {
				t.Errorf("Ready condition %+v, want %s", c, tc.wantReady)
			}
			if tc.obs.Problem != nil && c.Reason != tc.obs.Problem.Reason {
				t.Errorf("Ready reason %q, want the problem's %q", c.Reason, tc.obs.Problem.Reason)
			}
		})
	}
}

func TestComputeStatusFields(t *testing.T) {
	now := metav1.Now()
	obs := serving("n1")
	obs.Generation = 4
	st := ComputeStatus(obs, swv1.SharedVolumeStatus{}, now)
	if st.ServiceIP != "10.96.0.10" || st.Server.NodeName != "n1" || !st.Server.Ready || st.VolumeName != "pvc-u" ||
		st.ConsumerCount != 3 || st.BackingClaim == nil || st.BackingClaim.Name != "sw-u" || st.ObservedGeneration != 4 {
		t.Errorf("status fields not filled from the observation: %+v", st)
	}
	for _, c := range st.Conditions {
		if c.ObservedGeneration != 4 {
			t.Errorf("condition %s observedGeneration %d, want 4", c.Type, c.ObservedGeneration)
		}
	}
	// Conditions keep their transition time while their status holds.
	later := metav1.NewTime(now.Add(time.Minute))
	st2 := ComputeStatus(obs, st, later)
	if c := meta.FindStatusCondition(st2.Conditions, swv1.ConditionReady); !c.LastTransitionTime.Equal(&now) {
		t.Errorf("Ready transition time moved to %v without a transition", c.LastTransitionTime)
	}
}

// TestComputeStatusFailover walks one failover through every step: the lease expires on n1,
// the old server is fenced, the replacement starts on n2 and becomes Ready.
func TestComputeStatusFailover(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(s) * time.Second)) }

	st := ComputeStatus(serving("n1"), swv1.SharedVolumeStatus{}, at(0))
	if st.Phase != swv1.PhaseReady {
		t.Fatalf("start: %s", st.Phase)
	}
	// 1. Lease expired: FailingOver, counted, started, from n1.
	expired := serving("n1")
	expired.LeaseExpired = true
	st = ComputeStatus(expired, st, at(10))
	if st.Phase != swv1.PhaseFailingOver || st.FailoverCount != 1 || st.LastFailover == nil ||
		!st.LastFailover.StartTime.Equal(ptrTime(at(10))) || st.LastFailover.FromNode != "n1" {
		t.Fatalf("after lease expiry: phase %s count %d failover %+v", st.Phase, st.FailoverCount, st.LastFailover)
	}
	// Still expired on the next pass: no second count.
	st = ComputeStatus(expired, st, at(11))
	if st.FailoverCount != 1 || st.Phase != swv1.PhaseFailingOver {
		t.Fatalf("repeat pass: count %d phase %s", st.FailoverCount, st.Phase)
	}
	// 2. Fenced: old server known stopped, node fenced.
	fenced := Observation{BackingClaim: boundBacking(), FencedNode: "n1", LeaseExpired: true}
	st = ComputeStatus(fenced, st, at(20))
	if st.Phase != swv1.PhaseFenced || st.LastFailover.FencedTime == nil || !st.LastFailover.FencedTime.Equal(ptrTime(at(20))) ||
		len(st.FencedNodes) != 1 || st.FencedNodes[0] != "n1" {
		t.Fatalf("after fencing: phase %s failover %+v fenced %v", st.Phase, st.LastFailover, st.FencedNodes)
	}
	// The replacement is scheduled but not ready: still Fenced.
	starting := serving("n2")
	starting.ServerPod = serverPod("n2", false)
	st = ComputeStatus(starting, st, at(22))
	if st.Phase != swv1.PhaseFenced {
		t.Fatalf("replacement starting: phase %s", st.Phase)
	}
	// 3. Replacement Ready on n2: Ready, failover ended and timed.
	st = ComputeStatus(serving("n2"), st, at(25))
	f := st.LastFailover
	if st.Phase != swv1.PhaseReady || f.EndTime == nil || f.Duration == nil || f.Duration.Duration != 15*time.Second || f.ToNode != "n2" {
		t.Fatalf("after failover: phase %s failover %+v", st.Phase, f)
	}
	if st.FailoverCount != 1 {
		t.Errorf("failover count %d, want 1", st.FailoverCount)
	}
	// A later expiry is a second failover.
	again := serving("n2")
	again.LeaseExpired = true
	st = ComputeStatus(again, st, at(100))
	if st.FailoverCount != 2 || st.LastFailover.FromNode != "n2" || st.LastFailover.EndTime != nil {
		t.Errorf("second failover: count %d failover %+v", st.FailoverCount, st.LastFailover)
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

func TestComputeStatusLeaseRenewalsAreThrottled(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	obs := func(holder string, renewed time.Duration) Observation {
		o := serving("n1")
		rt := metav1.NewMicroTime(t0.Add(renewed))
		o.Lease = &swv1.LeaseStatus{Holder: holder, RenewTime: &rt}
		return o
	}
	st := ComputeStatus(obs("a", 0), swv1.SharedVolumeStatus{}, metav1.NewTime(t0))
	next := ComputeStatus(obs("a", 2*time.Second), st, metav1.NewTime(t0.Add(2*time.Second)))
	if !next.Lease.RenewTime.Equal(st.Lease.RenewTime) {
		t.Errorf("a renewal 2s later rewrote the status (%v -> %v)", st.Lease.RenewTime, next.Lease.RenewTime)
	}
	// A minute later, a renewal alone still writes nothing (a restarted controller reconciles
	// every volume, and would rewrite every status); along with another change it refreshes.
	alone := ComputeStatus(obs("a", LeaseStatusRefresh), st, metav1.NewTime(t0.Add(LeaseStatusRefresh)))
	if !apiequality.Semantic.DeepEqual(alone, st) {
		t.Errorf("a renewal alone changed the status: %+v -> %+v", st.Lease, alone.Lease)
	}
	withConsumer := obs("a", LeaseStatusRefresh)
	withConsumer.Consumers = 1
	later := ComputeStatus(withConsumer, st, metav1.NewTime(t0.Add(LeaseStatusRefresh)))
	if later.Lease.RenewTime.Equal(st.Lease.RenewTime) || later.ConsumerCount != 1 {
		t.Errorf("the renewal time never refreshes: %+v", later.Lease)
	}
	other := ComputeStatus(obs("b", time.Second), st, metav1.NewTime(t0.Add(time.Second)))
	if other.Lease.Holder != "b" || other.Lease.RenewTime.Equal(st.Lease.RenewTime) {
		t.Errorf("a new holder must show at once: %+v", other.Lease)
	}
}

// TestProgressOnly: which status changes of a provisioning volume may wait for the rest of their
// burst, computed from real observations step by step.
func TestProgressOnly(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "sw", Name: "sw-u"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10"}}
	pending := boundBacking()
	pending.Status.Phase = corev1.ClaimPending
	// The first pass: backing claim pending, Service, server pod unscheduled.
	first := ComputeStatus(Observation{BackingClaim: pending, Service: svc, ServerPod: serverPod("", false)}, swv1.SharedVolumeStatus{}, now)
	if first.Phase != swv1.PhaseProvisioning {
		t.Fatalf("first pass phase %s", first.Phase)
	}
	step := func(prev swv1.SharedVolumeStatus, obs Observation) swv1.SharedVolumeStatus {
		if obs.Service == nil {
			obs.Service = svc
		}
		return ComputeStatus(obs, prev, metav1.NewTime(now.Add(time.Second)))
	}
	bound := step(first, Observation{BackingClaim: boundBacking(), ServerPod: serverPod("", false)})
	scheduled := step(bound, Observation{BackingClaim: boundBacking(), ServerPod: serverPod("n1", false)})
	ready := step(scheduled, Observation{BackingClaim: boundBacking(), ServerPod: serverPod("n1", true)})
	withPV := serving("n1")
	withPV.ClaimBound = false
	pvMade := step(ready, withPV)
	done := step(pvMade, serving("n1"))
	problem := step(bound, Observation{BackingClaim: boundBacking(), ServerPod: serverPod("n1", false), Warnings: []Problem{{Reason: ReasonManagedClassMissing, Message: "gone"}}})
	resized := *bound.DeepCopy()
	resized.ObservedGeneration = 2
	fenced := *bound.DeepCopy()
	fenced.FencedNodes = []string{"n2"}
	leased := *bound.DeepCopy()
	leased.Lease = &swv1.LeaseStatus{Holder: "sw-u/abc"}
	for _, tc := range []struct {
		name     string
		prev, st swv1.SharedVolumeStatus
		want     bool
	}{
		{"first status (phase set)", swv1.SharedVolumeStatus{}, first, false},
		{"backing claim bound", first, bound, true},
		{"server scheduled", bound, scheduled, true},
		{"server Ready: CreateVolume waits for it", scheduled, ready, false},
		{"PV made, claim not bound yet", ready, pvMade, true},
		{"claim bound: Ready", pvMade, done, false},
		{"a warning appears", bound, problem, false},
		{"the spec changed", bound, resized, false},
		{"a fenced node", bound, fenced, false},
		{"the lease's holder", bound, leased, false},
		{"Ready volume", done, step(done, serving("n2")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ProgressOnly(tc.prev, tc.st); got != tc.want {
				t.Errorf("ProgressOnly = %v, want %v\nprev %+v\nst   %+v", got, tc.want, tc.prev, tc.st)
			}
		})
	}
}
