package fencing

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// Event reasons of fencing.
const (
	ReasonFenced      = "ServerFenced"
	ReasonNodeFenced  = "NodeFenced"
	ReasonUnfenced    = "NodeUnfenced"
	ReasonEvicted     = "ConsumerEvicted"
	ReasonFenceFailed = "FencingFailed"
)

// FencerConfig configures the controller side of fencing.
type FencerConfig struct {
	// Margin is waited beyond a lease's duration before its holder is declared stopped.
	Margin time.Duration
}

// Step is one write of a fencing, in order.
type Step string

// The fencing steps.
const (
	StepLeaseReleased Step = "LeaseReleased"
	StepPodDeleted    Step = "FencedPodDeleted"
	StepDetached      Step = "AttachmentsRemoved"
)

// Fencer declares servers that stopped renewing their lease fenced and clears the way for a
// replacement. It is keyed by lease.
type Fencer struct {
	Client   client.Client
	Recorder events.EventRecorder
	Config   FencerConfig
	Metrics  *Metrics
	Now      func() time.Time
	// OnStep, when set, is called after each fencing step's write (the crash tests stop there).
	OnStep func(ctx context.Context, step Step, lease types.NamespacedName)
	// Wake, when set, receives a lease once it may have stayed unchanged for D plus the margin
	// (SetupWithManager feeds it into the controller's queue, and closes Done when the manager
	// stops). A renewal then never reaches Reconcile: it only moves the lease's deadline timer
	// (Renewed). Without Wake, Reconcile asks to be requeued at the deadline instead.
	Wake chan<- event.GenericEvent
	Done <-chan struct{}

	mu   sync.Mutex
	seen map[types.NamespacedName]*observation
}

// observation is when this process last saw a lease change, on its own monotonic clock, and
// the timer that wakes the lease's reconcile at its deadline.
type observation struct {
	resourceVersion string
	at              time.Time
	deadline        *time.Timer
}

// Verdict says how long to wait before a lease's holder may be declared stopped: zero or less
// means now. seenAt is when this process last saw the lease change.
func Verdict(lease *coordinationv1.Lease, seenAt, now time.Time, margin time.Duration) (holder string, wait time.Duration) {
	holder = ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder == "" {
		return "", 0
	}
	return holder, LeaseDuration(lease) + margin - now.Sub(seenAt)
}

// ParseHolder splits a holder identity "podName_podUID".
func ParseHolder(identity string) (pod string, uid types.UID) {
	name, u, _ := strings.Cut(identity, "_")
	return name, types.UID(u)
}

func (f *Fencer) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Reconcile implements reconcile.Reconciler for a server lease.
func (f *Fencer) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	lease := &coordinationv1.Lease{}
	if err := f.Client.Get(ctx, req.NamespacedName, lease); apierrors.IsNotFound(err) {
		f.forget(req.NamespacedName)
		return ctrl.Result{}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting lease: %w", err)
	}
	seenAt := f.observe(req.NamespacedName, lease)
	holder, wait := Verdict(lease, seenAt, f.now(), f.Config.Margin)
	if holder == "" {
		// Released. If this process (or an earlier one, stopped midway) released it from a
		// stopped holder, finish that fencing: each of its later steps is idempotent.
		if fenced := lease.Annotations[swv1.AnnotationFencedHolder]; fenced != "" {
			return f.clear(ctx, lease, fenced, lease.Annotations[swv1.AnnotationFencedNode], false)
		}
		return ctrl.Result{}, nil
	}
	if wait > 0 {
		if f.arm(req.NamespacedName, wait) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	return f.fence(ctx, lease, holder)
}

// IsRenewal tells whether an update of a lease is only its holder renewing it: held by the same
// holder before and after, its fencing annotations untouched. Such an update changes nothing
// the Fencer decides on but the time it last saw the lease change.
func IsRenewal(old, cur *coordinationv1.Lease) bool {
	holder := ptr.Deref(cur.Spec.HolderIdentity, "")
	return holder != "" && holder == ptr.Deref(old.Spec.HolderIdentity, "") &&
		old.Annotations[swv1.AnnotationFencedHolder] == cur.Annotations[swv1.AnnotationFencedHolder] &&
		old.Annotations[swv1.AnnotationFencedNode] == cur.Annotations[swv1.AnnotationFencedNode]
}

// Renewed takes a renewal the watch delivered (IsRenewal): it records when this process saw
// the lease change, exactly as Reconcile would, and moves the lease's deadline to D plus the
// margin from then. That is all a renewal costs; the lease is reconciled only if the deadline
// passes without another one. It tells whether a deadline timer is armed (false without Wake,
// and the caller must then enqueue the lease).
func (f *Fencer) Renewed(lease *coordinationv1.Lease) bool {
	key := client.ObjectKeyFromObject(lease)
	f.Metrics.renewal()
	seenAt := f.observe(key, lease)
	_, wait := Verdict(lease, seenAt, f.now(), f.Config.Margin)
	return f.arm(key, wait)
}

func (f *Fencer) observe(key types.NamespacedName, lease *coordinationv1.Lease) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[types.NamespacedName]*observation{}
	}
	o, ok := f.seen[key]
	if !ok {
		o = &observation{}
		f.seen[key] = o
	}
	if !ok || o.resourceVersion != lease.ResourceVersion {
		o.resourceVersion, o.at = lease.ResourceVersion, f.now()
	}
	return o.at
}

// arm (re)sets the lease's deadline timer to send it to Wake after wait. It tells whether it
// did: without Wake, or for a lease not observed, nothing is armed.
func (f *Fencer) arm(key types.NamespacedName, wait time.Duration) bool {
	if f.Wake == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.seen[key]
	if !ok {
		return false
	}
	if o.deadline != nil {
		o.deadline.Reset(wait)
		return true
	}
	o.deadline = time.AfterFunc(wait, func() {
		select {
		case f.Wake <- event.GenericEvent{Object: &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}:
		case <-f.Done:
		}
	})
	return true
}

func (f *Fencer) forget(key types.NamespacedName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.seen[key]; ok && o.deadline != nil {
		o.deadline.Stop()
	}
	delete(f.seen, key)
}

// fence runs once the holder is known stopped: release the lease (compare-and-swap), remove
// the old pod, free the RWO attachment, and tell.
func (f *Fencer) fence(ctx context.Context, lease *coordinationv1.Lease, holder string) (ctrl.Result, error) {
	logger := log.FromContext(ctx).WithValues("holder", holder)
	start := f.now()
	podName, podUID := ParseHolder(holder)
	pod := &corev1.Pod{}
	node := ""
	if err := f.Client.Get(ctx, client.ObjectKey{Namespace: lease.Namespace, Name: podName}, pod); err == nil && pod.UID == podUID {
		node = pod.Spec.NodeName
	} else if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("getting server pod: %w", err)
	} else {
		pod = nil
	}

	// 1. Release: fails if the holder renewed after all (then it is alive and nothing happens).
	released := lease.DeepCopy()
	released.Spec.HolderIdentity = nil
	if released.Annotations == nil {
		released.Annotations = map[string]string{}
	}
	released.Annotations[swv1.AnnotationFencedHolder] = holder
	released.Annotations[swv1.AnnotationFencedNode] = node
	released.Annotations[swv1.AnnotationFencedAt] = start.UTC().Format(time.RFC3339Nano)
	if err := f.Client.Update(ctx, released); apierrors.IsConflict(err) {
		logger.V(1).Info("lease changed while fencing; holder is alive")
		//lint:ignore SA1019 a rate-limited requeue at once is what is meant: look again at the renewed lease, no fixed delay
		return ctrl.Result{Requeue: true}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("releasing lease: %w", err)
	}
	logger.Info("server fenced: it stopped renewing its lease", "node", node)
	f.step(ctx, StepLeaseReleased, released)
	return f.clear(ctx, released, holder, node, true)
}

func (f *Fencer) step(ctx context.Context, s Step, lease *coordinationv1.Lease) {
	if f.OnStep != nil {
		f.OnStep(ctx, s, client.ObjectKeyFromObject(lease))
	}
}

// clear takes the steps after the release, for the holder fenced off node: the old pod goes,
// then its RWO attachment. Both are idempotent, so a controller stopped midway finishes them
// on its next look at the released lease; announce tells the first time.
func (f *Fencer) clear(ctx context.Context, lease *coordinationv1.Lease, holder, node string, announce bool) (ctrl.Result, error) {
	podName, podUID := ParseHolder(holder)
	pod := &corev1.Pod{}
	if err := f.Client.Get(ctx, client.ObjectKey{Namespace: lease.Namespace, Name: podName}, pod); apierrors.IsNotFound(err) || (err == nil && pod.UID != podUID) {
		pod = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("getting server pod: %w", err)
	}
	// 2. The old pod goes at once: its process has stopped serving by itself, and its node may
	// never confirm the deletion.
	if pod != nil {
		if err := f.Client.Delete(ctx, pod, client.GracePeriodSeconds(0), client.Preconditions{UID: &pod.UID}); err != nil && !apierrors.IsNotFound(err) {
			f.event(pod, corev1.EventTypeWarning, ReasonFenceFailed, "Fence", "cannot force-delete the fenced server pod: "+err.Error())
			return ctrl.Result{}, fmt.Errorf("force-deleting server pod: %w", err)
		}
		f.step(ctx, StepPodDeleted, lease)
	}
	// 3. The backing RWO volume may attach elsewhere at once.
	detached, err := f.detach(ctx, lease, node)
	if err != nil {
		return ctrl.Result{}, err
	}
	if detached > 0 {
		f.step(ctx, StepDetached, lease)
	}
	if !announce {
		return ctrl.Result{}, nil
	}
	f.Metrics.fenced()
	msg := fmt.Sprintf("NFS server %s on node %q stopped renewing its lease %s; fenced: lease released, pod force-deleted, %d VolumeAttachment(s) removed; a replacement is starting",
		podName, node, lease.Name, detached)
	if pod != nil {
		if claim := claimOf(pod); claim != nil {
			f.event(claim, corev1.EventTypeWarning, ReasonFenced, "Fence", msg)
		}
	}
	if node != "" {
		f.event(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, corev1.EventTypeWarning, ReasonFenced, "Fence", msg)
	}
	return ctrl.Result{}, nil
}

// detach deletes the VolumeAttachments of the volume's backing PV on node.
func (f *Fencer) detach(ctx context.Context, lease *coordinationv1.Lease, node string) (int, error) {
	if node == "" {
		return 0, nil
	}
	backing := &corev1.PersistentVolumeClaim{}
	if err := f.Client.Get(ctx, client.ObjectKey{Namespace: lease.Namespace, Name: lease.Name}, backing); apierrors.IsNotFound(err) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("getting backing claim: %w", err)
	}
	return Detach(ctx, f.Client, backing.Spec.VolumeName, node)
}

// Detach deletes the VolumeAttachments of PV pv on node, and tells how many it deleted (one
// already being deleted counts). The Fencer calls it when it fences; the provisioner calls it
// for every node a volume was fenced off, so that a fencing cut short never leaves the disk
// held by a dead node.
func Detach(ctx context.Context, c client.Client, pv, node string) (int, error) {
	if pv == "" || node == "" {
		return 0, nil
	}
	vas := &storagev1.VolumeAttachmentList{}
	if err := c.List(ctx, vas); err != nil {
		return 0, fmt.Errorf("listing volume attachments: %w", err)
	}
	n := 0
	for i := range vas.Items {
		va := &vas.Items[i]
		if va.Spec.NodeName != node || ptr.Deref(va.Spec.Source.PersistentVolumeName, "") != pv {
			continue
		}
		if va.DeletionTimestamp == nil {
			if err := c.Delete(ctx, va); err != nil && !apierrors.IsNotFound(err) {
				return n, fmt.Errorf("deleting volume attachment %s: %w", va.Name, err)
			}
		}
		n++
	}
	return n, nil
}

// claimOf names the RWX claim a server pod serves, from the labels the controller set.
func claimOf(pod *corev1.Pod) *corev1.PersistentVolumeClaim {
	l := pod.Labels
	if l[swv1.LabelClaimNamespace] == "" || l[swv1.LabelClaimName] == "" {
		return nil
	}
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{
		Namespace: l[swv1.LabelClaimNamespace], Name: l[swv1.LabelClaimName], UID: types.UID(l[swv1.LabelClaimUID]),
	}}
}

func (f *Fencer) event(regarding runtime.Object, typ, reason, action, msg string) {
	report.Event(f.Recorder, regarding, typ, reason, action, msg)
}

// Metrics of fencing.
type Metrics struct {
	fencings prometheus.Counter
	nodes    prometheus.Counter
	renewals prometheus.Counter
}

// NewMetrics registers fencing metrics with reg (reusing them if already there).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		fencings: prometheus.NewCounter(prometheus.CounterOpts{Name: "sharewarden_fencings_total", Help: "Servers declared stopped and fenced after their lease expired."}),
		nodes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sharewarden_node_fencings_total", Help: "Nodes fenced as a whole (NotReady while a server was fenced off them)."}),
		renewals: prometheus.NewCounter(prometheus.CounterOpts{Name: "sharewarden_lease_renewals_seen_total", Help: "Server lease renewals the Fencer saw; each only moves the lease's deadline, none is reconciled."}),
	}
	m.fencings = report.Register(reg, m.fencings)
	m.nodes = report.Register(reg, m.nodes)
	m.renewals = report.Register(reg, m.renewals)
	return m
}

func (m *Metrics) renewal() {
	if m != nil {
		m.renewals.Inc()
	}
}

func (m *Metrics) fenced() {
	if m != nil {
		m.fencings.Inc()
	}
}

func (m *Metrics) nodeFenced() {
	if m != nil {
		m.nodes.Inc()
	}
}
