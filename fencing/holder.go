package fencing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/kubeclient"
	"github.com/sharewarden/sharewarden/report"
)

// Annotations the Fencer writes on a lease it releases; a new holder clears them. They live in
// package v1alpha1; these names stay for provisioner/reconciler.go until it reads those.
const (
	AnnotationFencedHolder = swv1.AnnotationFencedHolder
	AnnotationFencedNode   = swv1.AnnotationFencedNode
	AnnotationFencedAt     = swv1.AnnotationFencedAt
)

// ErrLeaseLost ends a server's serving context when it could not renew in time or the lease
// was taken from it.
var ErrLeaseLost = errors.New("volume lease lost")

// LeaseName is the name of a volume's lease.
func LeaseName(volumeID string) string { return swv1.ObjectName(volumeID) }

// HolderOptions configure a server's self-fencing lease.
type HolderOptions struct {
	// Enabled turns self-fencing on; off, the server serves without a lease (tests only).
	Enabled bool
	// Options reach the apiserver: one lease read and write every renewal interval.
	kubeclient.Options
	Namespace string
	// Identity names this server incarnation: pod name and UID, so a replacement pod with the
	// same name is another holder.
	Identity      string
	Duration      time.Duration
	RenewInterval time.Duration
	SafetyMargin  time.Duration
	// Labels are added to the lease (the controller passes the claim's, to find its volume).
	Labels map[string]string
}

// DefaultHolderOptions reads the pod's identity from the downward-API environment.
func DefaultHolderOptions() HolderOptions {
	id := os.Getenv("POD_NAME")
	if uid := os.Getenv("POD_UID"); uid != "" {
		id += "_" + uid
	}
	return HolderOptions{
		Enabled:       true,
		Options:       kubeclient.NewOptions(5, 10),
		Namespace:     os.Getenv("POD_NAMESPACE"),
		Identity:      id,
		Duration:      DefaultLeaseDuration,
		RenewInterval: 2 * time.Second,
		SafetyMargin:  3 * time.Second,
	}
}

// AddFlags binds the options to fs.
func (o *HolderOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "self-fence", o.Enabled, "serve only while holding the volume's Lease, and stop at once when it cannot be renewed (turn off only in tests)")
	o.Options.AddFlags(fs)
	fs.StringVar(&o.Namespace, "lease-namespace", o.Namespace, "namespace of the volume's Lease (default $POD_NAMESPACE)")
	fs.StringVar(&o.Identity, "lease-holder", o.Identity, "this server's identity in the Lease (default $POD_NAME_$POD_UID)")
	fs.DurationVar(&o.Duration, "lease-duration", o.Duration, "D: how long the Lease is valid after a renewal; a successor waits this long after the last renewal it saw")
	fs.DurationVar(&o.RenewInterval, "lease-renew-interval", o.RenewInterval, "R: how often the Lease is renewed")
	fs.StringToStringVar(&o.Labels, "lease-labels", o.Labels, "labels to put on the Lease (key=value,...)")
	fs.DurationVar(&o.SafetyMargin, "lease-safety-margin", o.SafetyMargin, "M: the server stops serving D-M after sending its last successful renewal")
}

// Validate reports every bad option.
func (o HolderOptions) Validate() error {
	if !o.Enabled {
		return nil
	}
	errs := []error{o.Options.Validate()}
	if o.Namespace == "" {
		errs = append(errs, errors.New("--lease-namespace (or $POD_NAMESPACE) must be set"))
	}
	if o.Identity == "" {
		errs = append(errs, errors.New("--lease-holder (or $POD_NAME) must be set"))
	}
	if o.Duration < 2*time.Second || o.Duration%time.Second != 0 {
		errs = append(errs, fmt.Errorf("--lease-duration %s: want whole seconds, at least 2s", o.Duration))
	}
	if o.SafetyMargin <= 0 || o.SafetyMargin >= o.Duration {
		errs = append(errs, fmt.Errorf("--lease-safety-margin %s: want more than 0 and less than --lease-duration", o.SafetyMargin))
	}
	if o.RenewInterval <= 0 || o.RenewInterval*2 > o.Duration-o.SafetyMargin {
		errs = append(errs, fmt.Errorf("--lease-renew-interval %s: want at most half of duration minus margin (%s), so one failed renewal is survived", o.RenewInterval, (o.Duration-o.SafetyMargin)/2))
	}
	return errors.Join(errs...)
}

// Holder holds a volume's lease for one server.
type Holder struct {
	opts   HolderOptions
	leases coordclient.LeaseInterface
	name   string
	labels map[string]string
	// clock is where the holder reads the time and arms its timers: the real clock, or a fake
	// one that tests step.
	clock clock.WithTicker

	mu    sync.Mutex
	lease *coordinationv1.Lease // last version written or read

	// Metrics, when set, time renewals and count failed ones.
	Metrics *HolderMetrics
}

// HolderMetrics are a lease holder's metrics, on the NFS server agent's registry (which adds
// the volume's labels).
type HolderMetrics struct {
	renewals prometheus.Histogram
	failures prometheus.Counter
}

// NewHolderMetrics registers a holder's metrics with reg (reusing them if already there).
func NewHolderMetrics(reg prometheus.Registerer) *HolderMetrics {
	m := &HolderMetrics{
		renewals: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sharewarden_nfsserver_lease_renew_duration_seconds",
			Help:    "Time a successful renewal of the volume's Lease took, from sending it to the apiserver's answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 3, 5},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sharewarden_nfsserver_lease_renew_failures_total",
			Help: "Renewals of the volume's Lease that failed (apiserver unreachable or slow, or the Lease taken by another holder); the server stops serving once none succeeded for lease duration minus safety margin.",
		}),
	}
	m.renewals = report.Register(reg, m.renewals)
	m.failures = report.Register(reg, m.failures)
	return m
}

func (m *HolderMetrics) renewed(took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failures.Inc()
		return
	}
	m.renewals.Observe(took.Seconds())
}

// NewHolder returns a holder of volumeID's lease.
func NewHolder(opts HolderOptions, leases coordclient.LeasesGetter, volumeID string) (*Holder, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Holder{
		opts:   opts,
		leases: leases.Leases(opts.Namespace),
		name:   LeaseName(volumeID),
		labels: leaseLabels(opts.Labels, volumeID),
		clock:  clock.RealClock{},
	}, nil
}

// DefaultLeaseDuration is D unless --lease-duration says otherwise, and the D of a lease that
// does not say.
const DefaultLeaseDuration = 10 * time.Second

// LeaseDuration is a lease's D: its leaseDurationSeconds, or DefaultLeaseDuration when it has
// none. A holder waiting to take a lease and the Fencer judging one read D the same way, so a
// lease without a duration is never fenced sooner than a holder would take it.
func LeaseDuration(lease *coordinationv1.Lease) time.Duration {
	if s := ptr.Deref(lease.Spec.LeaseDurationSeconds, 0); s > 0 {
		return time.Duration(s) * time.Second
	}
	return DefaultLeaseDuration
}

// Identity is a server pod's holder identity, "podName_podUID" (see ParseHolder).
func Identity(pod *corev1.Pod) string { return pod.Name + "_" + string(pod.UID) }

// LeaseFor builds the lease of a running server pod whose Lease was deleted, held in the pod's
// name and renewed at now: the live server goes on renewing it, and a dead one is fenced once it
// expires, as if the lease had never gone.
func LeaseFor(pod *corev1.Pod, labels map[string]string, duration time.Duration, now time.Time) *coordinationv1.Lease {
	if duration < time.Second {
		duration = DefaultLeaseDuration
	}
	renewed := metav1.NewMicroTime(now)
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: LeaseName(pod.Labels[swv1.LabelVolume]), Labels: leaseLabels(labels, pod.Labels[swv1.LabelVolume])},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(Identity(pod)),
			LeaseDurationSeconds: ptr.To(int32(duration / time.Second)),
			AcquireTime:          &renewed,
			RenewTime:            &renewed,
		},
	}
}

func leaseLabels(extra map[string]string, volumeID string) map[string]string {
	l := map[string]string{}
	for k, v := range extra {
		l[k] = v
	}
	l[swv1.LabelVolume] = volumeID
	l[swv1.LabelComponent] = swv1.ComponentNFSServer
	return l
}

// Gate blocks until this server holds the lease, then returns a context that ends (cause
// ErrLeaseLost) the moment the server must stop serving. It has the shape of nfsserver.Gate.
func (h *Holder) Gate(ctx context.Context) (context.Context, error) {
	logger := log.FromContext(ctx).WithValues("lease", h.opts.Namespace+"/"+h.name, "holder", h.opts.Identity)
	sent, err := h.acquire(ctx)
	if err != nil {
		return nil, err
	}
	logger.Info("lease acquired; serving")
	serving, cancel := context.WithCancelCause(ctx)
	go h.keep(log.IntoContext(serving, logger), cancel, sent)
	return serving, nil
}

// acquire waits until the lease is free, released by the Fencer, already ours, or unchanged
// for a full lease duration as seen by this process, and takes it. It returns when the
// successful write was sent.
func (h *Holder) acquire(ctx context.Context) (time.Time, error) {
	var seen *coordinationv1.Lease
	var seenAt time.Time
	for {
		var sent time.Time
		cur, err := h.get(ctx)
		switch {
		case apierrors.IsNotFound(err):
			if sent, err = h.write(ctx, nil); err == nil {
				return sent, nil
			}
		case err != nil:
		default:
			if seen == nil || changed(seen, cur) {
				seen, seenAt = cur, h.clock.Now()
			}
			holder := ptr.Deref(cur.Spec.HolderIdentity, "")
			if holder == "" || holder == h.opts.Identity || h.clock.Since(seenAt) >= LeaseDuration(cur) {
				if sent, err = h.write(ctx, cur); err == nil {
					return sent, nil
				}
			}
		}
		if err != nil && !apierrors.IsConflict(err) {
			log.FromContext(ctx).Error(err, "lease not acquired yet; retrying")
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("waiting for the volume lease: %w", ctx.Err())
		case <-h.clock.After(h.opts.RenewInterval):
		}
	}
}

func changed(a, b *coordinationv1.Lease) bool {
	return a.ResourceVersion != b.ResourceVersion
}

// keep renews every R and cancels serving when no renewal has succeeded for D - M since the
// last successful one was sent, or when the lease is someone else's.
func (h *Holder) keep(ctx context.Context, cancel context.CancelCauseFunc, lastSent time.Time) {
	logger := log.FromContext(ctx)
	budget := h.opts.Duration - h.opts.SafetyMargin
	deadline := h.clock.NewTimer(budget - h.clock.Since(lastSent))
	defer deadline.Stop()
	renew := h.clock.NewTicker(h.opts.RenewInterval)
	defer renew.Stop()
	results := make(chan time.Time, 1)
	inFlight := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C():
			logger.Info("lease not renewed in time; stopping service", "budget", budget.String())
			cancel(fmt.Errorf("%w: not renewed within %s", ErrLeaseLost, budget))
			return
		case sent := <-results:
			inFlight = false
			if sent.IsZero() {
				continue
			}
			if sent.After(lastSent) {
				lastSent = sent
				deadline.Reset(budget - h.clock.Since(lastSent))
			}
		case <-renew.C():
			if inFlight {
				continue
			}
			inFlight = true
			go func() {
				start := h.clock.Now()
				sent, err := h.renew(ctx, budget-h.clock.Since(lastSent))
				if ctx.Err() == nil {
					h.Metrics.renewed(h.clock.Since(start), err)
				}
				if errors.Is(err, ErrLeaseLost) {
					logger.Info("lease taken by another holder; stopping service")
					cancel(err)
				} else if err != nil {
					logger.Info("lease renewal failed", "error", err.Error())
				}
				results <- sent
			}()
		}
	}
}

// renew writes a fresh renewTime; it returns when the write was sent, or zero on failure.
func (h *Holder) renew(ctx context.Context, timeout time.Duration) (time.Time, error) {
	if timeout <= 0 {
		return time.Time{}, errors.New("no time left")
	}
	// The request's own deadline is the wall clock's (the transport's): it only bounds the
	// request, while keep's deadline on h.clock is what stops serving.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h.mu.Lock()
	cur := h.lease
	h.mu.Unlock()
	sent, err := h.write(ctx, cur)
	if apierrors.IsNotFound(err) {
		// Deleted under us. Nobody else can hold a lease that does not exist, and the pod's
		// fixed name keeps any successor from starting, so take it again by creating it.
		sent, err = h.write(ctx, nil)
	}
	if apierrors.IsConflict(err) {
		fresh, gerr := h.get(ctx)
		if gerr != nil {
			return time.Time{}, gerr
		}
		if ptr.Deref(fresh.Spec.HolderIdentity, "") != h.opts.Identity {
			return time.Time{}, fmt.Errorf("%w: now held by %q", ErrLeaseLost, ptr.Deref(fresh.Spec.HolderIdentity, ""))
		}
		sent, err = h.write(ctx, fresh)
	}
	if err != nil {
		return time.Time{}, err
	}
	return sent, nil
}

func (h *Holder) get(ctx context.Context) (*coordinationv1.Lease, error) {
	l, err := h.leases.Get(ctx, h.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// write creates (cur nil) or updates the lease as held by us; the update carries cur's
// resourceVersion, so it fails if anyone wrote in between. It returns when it was sent.
func (h *Holder) write(ctx context.Context, cur *coordinationv1.Lease) (time.Time, error) {
	sent := h.clock.Now()
	now := metav1.NewMicroTime(sent)
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: h.name, Namespace: h.opts.Namespace, Labels: h.labels}}
	if cur != nil {
		l = cur.DeepCopy()
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		for k, v := range h.labels {
			l.Labels[k] = v
		}
		for _, a := range []string{swv1.AnnotationFencedHolder, swv1.AnnotationFencedNode, swv1.AnnotationFencedAt} {
			delete(l.Annotations, a)
		}
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") != h.opts.Identity {
		l.Spec.AcquireTime = &now
		l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
	}
	l.Spec.HolderIdentity = ptr.To(h.opts.Identity)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(h.opts.Duration / time.Second))
	l.Spec.RenewTime = &now
	var out *coordinationv1.Lease
	var err error
	if cur == nil {
		out, err = h.leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		out, err = h.leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return time.Time{}, err
	}
	h.mu.Lock()
	h.lease = out
	h.mu.Unlock()
	return sent, nil
}

// Release gives the lease up after the server stopped serving cleanly, so a successor need not
// wait out the lease. It only clears the lease if it is still ours.
func (h *Holder) Release(ctx context.Context) error {
	h.mu.Lock()
	cur := h.lease
	h.mu.Unlock()
	if cur == nil || ptr.Deref(cur.Spec.HolderIdentity, "") != h.opts.Identity {
		return nil
	}
	l := cur.DeepCopy()
	l.Spec.HolderIdentity = nil
	if _, err := h.leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing the volume lease: %w", err)
	}
	return nil
}
