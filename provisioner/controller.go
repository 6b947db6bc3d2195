// Package provisioner is ShareWarden's controller: for every claim on a managed storage class it
// creates a backing ReadWriteOnce claim, a per-volume NFS server pod, a stable Service and an
// NFS PV bound to the claim, keeps a SharedVolume with the volume's status, follows resizes,
// and removes or retains everything when the claim is deleted.
package provisioner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	snapshotv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	"github.com/spf13/pflag"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/kubeclient"
	"github.com/sharewarden/sharewarden/report"
)

// IndexPodClaims indexes pods by the names of the claims they mount.
const IndexPodClaims = "spec.volumes.persistentVolumeClaim.claimName"

// IndexClaimKey indexes the PVs and backing claims the controller made by the RWX claim they
// serve ("namespace/name", from their labels).
const IndexClaimKey = "sharewarden.io/claim-key"

func claimKeyValue(ns, name string) string { return ns + "/" + name }

// claimKeyIndex is IndexClaimKey's index function.
func claimKeyIndex(o client.Object) []string {
	if key, ok := claimKeyFromLabels(o); ok {
		return []string{claimKeyValue(key.Namespace, key.Name)}
	}
	return nil
}

// Options configure `sharewarden controller`.
type Options struct {
	// Options reach the apiserver (each new volume takes about a dozen requests).
	kubeclient.Options
	Namespace             string
	ServerImage           string
	ServerImagePullPolicy string
	ServerServiceAccount  string
	ServerHealthPort      int32
	ExportPath            string
	ServerExtraArgs       []string
	Workers               int
	FenceMargin           time.Duration
	UnfenceSettle         time.Duration
	EvictFencedConsumers  bool
	NetworkPolicy         bool
	OutOfServiceTaint     bool
	LeaderElect           bool
	// LeaseDuration, RenewDeadline and RetryPeriod time the controller's own leader election,
	// as kube-controller-manager's --leader-elect-* flags do: a leader that cannot renew within
	// RenewDeadline exits; a standby takes over at most LeaseDuration after the last renewal.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	MetricsAddr   string
	HealthAddr    string
	// PprofAddr serves net/http/pprof ("0", the default, disables it).
	PprofAddr string
	// CSIEndpoint, when set, serves the CSI identity and controller services there, for the
	// sidecars (external-provisioner, -resizer, csi-snapshotter) in the controller's pod.
	CSIEndpoint string
	// OnStep, not a flag, is called after each provisioning or release step's write: for
	// programs embedding the controller (the crash-at-every-step tests stop it there).
	OnStep func(ctx context.Context, step Step, claim types.NamespacedName)
	// OnFenceStep, not a flag, is called after each fencing step's write, likewise.
	OnFenceStep func(ctx context.Context, step fencing.Step, lease types.NamespacedName)
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		Options:               kubeclient.NewOptions(100, 200),
		Namespace:             swv1.DefaultSystemNamespace,
		ServerImage:           "ghcr.io/sharewarden/sharewarden-nfs-server:latest",
		ServerImagePullPolicy: string(corev1.PullIfNotPresent),
		ServerServiceAccount:  "sharewarden-nfs-server",
		ServerHealthPort:      9090,
		ExportPath:            "/export",
		Workers:               4,
		FenceMargin:           2 * time.Second,
		UnfenceSettle:         60 * time.Second,
		EvictFencedConsumers:  true,
		LeaderElect:           true,
		LeaseDuration:         15 * time.Second,
		RenewDeadline:         10 * time.Second,
		RetryPeriod:           2 * time.Second,
		MetricsAddr:           ":8080",
		HealthAddr:            ":8081",
		PprofAddr:             "0",
	}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Options.AddFlags(fs)
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "namespace for backing claims, NFS server pods and Services, and for the leader-election lease")
	fs.StringVar(&o.ServerImage, "server-image", o.ServerImage, "image of the NFS server pods (sharewarden-nfs-server)")
	fs.StringVar(&o.ServerImagePullPolicy, "server-image-pull-policy", o.ServerImagePullPolicy, "pull policy of the NFS server image")
	fs.StringVar(&o.ServerServiceAccount, "server-service-account", o.ServerServiceAccount, "service account of the NFS server pods")
	fs.Int32Var(&o.ServerHealthPort, "server-health-port", o.ServerHealthPort, "port of the NFS server agent's /healthz and /metrics")
	fs.StringVar(&o.ExportPath, "export-path", o.ExportPath, "where the backing volume is mounted in the server pod")
	fs.StringSliceVar(&o.ServerExtraArgs, "server-extra-arg", o.ServerExtraArgs, "extra argument for `sharewarden nfs-server` (repeatable)")
	fs.IntVar(&o.Workers, "workers", o.Workers, "volumes reconciled in parallel")
	fs.DurationVar(&o.FenceMargin, "fence-margin", o.FenceMargin, "waited beyond a server lease's duration before its holder is declared stopped and fenced")
	fs.DurationVar(&o.UnfenceSettle, "unfence-settle", o.UnfenceSettle, "how long a fenced node must be Ready again before it is unfenced; must exceed kube-controller-manager's --node-monitor-grace-period, since a dead node stays Ready in the API that long")
	fs.BoolVar(&o.EvictFencedConsumers, "evict-fenced-consumers", o.EvictFencedConsumers, "force-delete pods mounting ShareWarden volumes on a node fenced as a whole, so their controllers restart them elsewhere")
	fs.BoolVar(&o.NetworkPolicy, "network-policy", o.NetworkPolicy, "make a NetworkPolicy per volume admitting NFS only from its client allowlist (its consumers' node addresses), for CNIs that enforce policy; off, the controller removes the ones it made")
	fs.BoolVar(&o.OutOfServiceTaint, "out-of-service-taint", o.OutOfServiceTaint, "also taint nodes fenced as a whole node.kubernetes.io/out-of-service, for Kubernetes' non-graceful node shutdown handling of every pod there")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "elect a leader so that only one controller replica acts")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", o.LeaseDuration, "how long a standby waits after the leader's last renewal before it takes over")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", o.RenewDeadline, "how long the leader keeps trying to renew before it gives up and exits; raise it with --leader-elect-lease-duration on a loaded control plane")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", o.RetryPeriod, "how often candidates try to acquire or renew leadership")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "address of /metrics (\"0\" disables)")
	fs.StringVar(&o.HealthAddr, "health-probe-bind-address", o.HealthAddr, "address of /healthz and /readyz")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr, "address of /debug/pprof, for profiling memory and CPU (\"0\" disables; keep it on localhost or behind a port-forward)")
	fs.StringVar(&o.CSIEndpoint, "csi-endpoint", o.CSIEndpoint, "serve the CSI controller service of "+swv1.CSIDriverName+" on this unix:///path socket (empty: off)")
}

// Validate reports every bad option.
func (o *Options) Validate() error {
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("--namespace must be set (it also holds the leader-election lease)"))
	}
	if o.ServerImage == "" {
		errs = append(errs, errors.New("--server-image must be set"))
	}
	switch corev1.PullPolicy(o.ServerImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--server-image-pull-policy %q: want Always, IfNotPresent or Never", o.ServerImagePullPolicy))
	}
	if o.ServerHealthPort <= 0 || o.ServerHealthPort > 65535 || o.ServerHealthPort == swv1.NFSPort {
		errs = append(errs, fmt.Errorf("--server-health-port %d: want 1-65535 and not %d", o.ServerHealthPort, swv1.NFSPort))
	}
	errs = append(errs, o.Options.Validate())
	if o.FenceMargin < 0 || o.UnfenceSettle < 0 {
		errs = append(errs, fmt.Errorf("--fence-margin %s and --unfence-settle %s must not be negative", o.FenceMargin, o.UnfenceSettle))
	}
	errs = append(errs, checkLeaderElection(o.LeaseDuration, o.RenewDeadline, o.RetryPeriod))
	if o.Workers < 1 {
		errs = append(errs, fmt.Errorf("--workers %d: want at least 1", o.Workers))
	}
	if o.CSIEndpoint != "" {
		errs = append(errs, csidriver.CheckEndpoint(o.CSIEndpoint))
	}
	if len(o.ExportPath) == 0 || o.ExportPath[0] != '/' {
		errs = append(errs, fmt.Errorf("--export-path %q: want an absolute path", o.ExportPath))
	}
	return errors.Join(errs...)
}

// checkLeaderElection refuses timings client-go's leader elector would refuse at start, with
// the flags' names: lease > renew deadline > 1.2 × retry period > 0.
func checkLeaderElection(lease, renew, retry time.Duration) error {
	switch {
	case retry <= 0:
		return fmt.Errorf("--leader-elect-retry-period %s: want more than 0", retry)
	case renew <= time.Duration(leaderelection.JitterFactor*float64(retry)):
		return fmt.Errorf("--leader-elect-renew-deadline %s: want more than %.1f × --leader-elect-retry-period (%s)", renew, leaderelection.JitterFactor, retry)
	case lease <= renew:
		return fmt.Errorf("--leader-elect-lease-duration %s: want more than --leader-elect-renew-deadline (%s)", lease, renew)
	}
	return nil
}

func (o *Options) config() Config {
	return Config{
		UnfenceSettle: o.UnfenceSettle,
		Namespace:     o.Namespace,
		LeaseDuration: fencing.DefaultHolderOptions().Duration,
		NetworkPolicy: o.NetworkPolicy,
		Server: ServerConfig{
			Image:           o.ServerImage,
			ImagePullPolicy: corev1.PullPolicy(o.ServerImagePullPolicy),
			ServiceAccount:  o.ServerServiceAccount,
			HealthPort:      o.ServerHealthPort,
			ExportPath:      o.ExportPath,
			ExtraArgs:       o.ServerExtraArgs,
		},
	}
}

// Scheme holds the types the controller reads and writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("registering core types: %w", err)
	}
	if err := swv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("registering ShareWarden types: %w", err)
	}
	if err := snapshotv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("registering VolumeSnapshot types: %w", err)
	}
	return s, nil
}

// Run runs the controller until ctx ends.
func Run(ctx context.Context, opts *Options) error {
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	restCfg, err := opts.RESTConfig("sharewarden-controller")
	if err != nil {
		return err
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	leNS := opts.Namespace
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        log.FromContext(ctx),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.HealthAddr,
		PprofBindAddress:              opts.PprofAddr,
		LeaderElection:                opts.LeaderElect,
		LeaderElectionID:              "sharewarden-controller",
		LeaderElectionNamespace:       leNS,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &opts.LeaseDuration,
		RenewDeadline:                 &opts.RenewDeadline,
		RetryPeriod:                   &opts.RetryPeriod,
		Cache:                         cacheOptions(opts.Namespace),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding healthz: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding readyz: %w", err)
	}
	r := &Reconciler{
		Client:   mgr.GetClient(),
		Reader:   mgr.GetAPIReader(),
		Recorder: mgr.GetEventRecorder("sharewarden-controller"),
		Metrics:  NewMetrics(metrics.Registry),
		Config:   opts.config(),
		OnStep:   opts.OnStep,
	}
	if err := r.SetupWithManager(ctx, mgr, opts.Workers); err != nil {
		return err
	}
	report.Register(metrics.Registry, NewVolumeCollector(mgr.GetClient(), mgr.Elected()))
	if opts.CSIEndpoint != "" {
		if err := r.ServeCSI(ctx, mgr, opts.CSIEndpoint); err != nil {
			return err
		}
	}
	err = fencing.SetupWithManager(ctx, mgr, fencing.SetupOptions{
		Fencer:  fencing.FencerConfig{Margin: opts.FenceMargin},
		Nodes:   fencing.NodeFencerConfig{Settle: opts.UnfenceSettle, EvictConsumers: opts.EvictFencedConsumers, OutOfService: opts.OutOfServiceTaint},
		Workers: opts.Workers,
		OnStep:  opts.OnFenceStep,
	})
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// cacheOptions keep the controller small in large clusters: managed fields are dropped from
// every cached object, pods are cut down to what consumer counting reads, and Services and
// PVs are cached only when ShareWarden made them.
func cacheOptions(ns string) cache.Options {
	ours := labels.SelectorFromSet(labels.Set{swv1.LabelManagedBy: swv1.ManagedByController})
	serverLeases := labels.SelectorFromSet(labels.Set{swv1.LabelComponent: swv1.ComponentNFSServer})
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:              {Transform: slimPod},
			&corev1.Service{}:          {Label: ours},
			&corev1.PersistentVolume{}: {Label: ours},
			&coordinationv1.Lease{}:    {Label: serverLeases},
			// Only ShareWarden's namespace holds per-volume NetworkPolicies.
			&networkingv1.NetworkPolicy{}: {Label: ours, Namespaces: map[string]cache.Config{ns: {}}},
		},
	}
}

// SetupWithManager registers the pod index and the watches: SharedVolumes, claims (the RWX
// claims and the backing claims), server pods, Services and PVs all map to the RWX claim's
// namespace/name.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, workers int) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, IndexPodClaims, podClaimNames); err != nil {
		return fmt.Errorf("indexing pods by claim: %w", err)
	}
	for _, obj := range []client.Object{&corev1.PersistentVolume{}, &corev1.PersistentVolumeClaim{}} {
		if err := mgr.GetFieldIndexer().IndexField(ctx, obj, IndexClaimKey, claimKeyIndex); err != nil {
			return fmt.Errorf("indexing %T by claim: %w", obj, err)
		}
	}
	byLabels := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if key, ok := claimKeyFromLabels(o); ok {
			return []reconcile.Request{{NamespacedName: key}}
		}
		return nil
	})
	claims := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if key, ok := claimKeyFromLabels(o); ok { // a backing claim
			return []reconcile.Request{{NamespacedName: key}}
		}
		return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(o)}}
	})
	consumers := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if key, ok := claimKeyFromLabels(o); ok { // a server pod
			return []reconcile.Request{{NamespacedName: key}}
		}
		var out []reconcile.Request
		for _, name := range podClaimNames(o) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: name}})
		}
		return out
	})
	owned := builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[swv1.LabelManagedBy] == swv1.ManagedByController
	}))
	err := ctrl.NewControllerManagedBy(mgr).
		Named("provisioner").
		// The controller writes the status itself: its own status writes need no second pass.
		For(&swv1.SharedVolume{}, builder.WithPredicates(viewChanged())).
		Watches(&corev1.PersistentVolumeClaim{}, claims).
		Watches(&corev1.Pod{}, consumers, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			_, server := claimKeyFromLabels(o)
			return server || len(podClaimNames(o)) > 0
		}))).
		Watches(&corev1.Service{}, byLabels, owned).
		Watches(&corev1.PersistentVolume{}, byLabels, owned).
		Watches(&networkingv1.NetworkPolicy{}, byLabels, owned).
		// A managed or backing class coming back (or changing) resumes its volumes at once.
		Watches(&storagev1.StorageClass{}, handler.EnqueueRequestsFromMapFunc(r.volumesOfClass)).
		// A consumer's node changing address or being fenced changes its volumes' allowlists.
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.volumesOnNode), builder.WithPredicates(nodeAccessChanged())).
		// A server renews its lease every few seconds; only a new holder or a fencing matters here.
		Watches(&coordinationv1.Lease{}, byLabels, owned, builder.WithPredicates(leaseChanged())).
		// One controller per manager; names repeat only when tests run several managers in a process.
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, SkipNameValidation: ptr.To(true)}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("building controller: %w", err)
	}
	return nil
}

// volumesOfClass maps a storage class to the volumes made with it, as managed or backing class.
func (r *Reconciler) volumesOfClass(ctx context.Context, o client.Object) []reconcile.Request {
	svs := &swv1.SharedVolumeList{}
	if err := r.Client.List(ctx, svs); err != nil {
		log.FromContext(ctx).Error(err, "listing volumes of a storage class", "class", o.GetName())
		return nil
	}
	var out []reconcile.Request
	for _, sv := range svs.Items {
		if sv.Spec.BackingStorageClass == o.GetName() || (sv.Status.StorageClass != nil && sv.Status.StorageClass.Name == o.GetName()) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&sv)})
		}
	}
	return out
}

// volumesOnNode maps a node to the volumes its pods mount (through fencing's pod-by-node
// index, which fencing.SetupWithManager registers on the same manager).
func (r *Reconciler) volumesOnNode(ctx context.Context, o client.Object) []reconcile.Request {
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.MatchingFields{fencing.IndexPodNode: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing pods of a node", "node", o.GetName())
		return nil
	}
	var out []reconcile.Request
	for i := range pods.Items {
		for _, name := range podClaimNames(&pods.Items[i]) {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: pods.Items[i].Namespace, Name: name}})
		}
	}
	return out
}

// nodeAccessChanged passes node creations and deletions, and updates that change what the
// allowlist reads of a node: its InternalIPs or its fenced label (not heartbeats).
func nodeAccessChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.Node)
		n, ok2 := e.ObjectNew.(*corev1.Node)
		if !ok1 || !ok2 {
			return true
		}
		return o.Labels[swv1.LabelNodeFenced] != n.Labels[swv1.LabelNodeFenced] || !slices.Equal(internalIPs(o), internalIPs(n))
	}}
}

func internalIPs(n *corev1.Node) []string {
	var out []string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			out = append(out, a.Address)
		}
	}
	return out
}

// viewChanged passes SharedVolume creations and deletions, and updates of anything but the
// status: spec (generation), labels, annotations, finalizers, owners and the deletion mark.
// Only the controller writes the status, and the pass that wrote it already acted on what it
// holds; reconciling again on that write was a second pass per status write (about five per
// new volume), queued in front of other volumes' first passes.
func viewChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		if o == nil || n == nil {
			return true
		}
		return o.GetGeneration() != n.GetGeneration() ||
			!maps.Equal(o.GetLabels(), n.GetLabels()) || !maps.Equal(o.GetAnnotations(), n.GetAnnotations()) ||
			!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
			!apiequality.Semantic.DeepEqual(o.GetOwnerReferences(), n.GetOwnerReferences()) ||
			(o.GetDeletionTimestamp() == nil) != (n.GetDeletionTimestamp() == nil)
	}}
}

// leaseChanged passes lease creations and deletions, and updates that change the holder or the
// fencing annotations, but not plain renewals.
func leaseChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*coordinationv1.Lease)
		n, ok2 := e.ObjectNew.(*coordinationv1.Lease)
		if !ok1 || !ok2 {
			return true
		}
		return ptr.Deref(o.Spec.HolderIdentity, "") != ptr.Deref(n.Spec.HolderIdentity, "") ||
			o.Annotations[swv1.AnnotationFencedHolder] != n.Annotations[swv1.AnnotationFencedHolder]
	}}
}

func claimKeyFromLabels(o client.Object) (client.ObjectKey, bool) {
	l := o.GetLabels()
	if l[swv1.LabelManagedBy] != swv1.ManagedByController || l[swv1.LabelClaimNamespace] == "" || l[swv1.LabelClaimName] == "" {
		return client.ObjectKey{}, false
	}
	return client.ObjectKey{Namespace: l[swv1.LabelClaimNamespace], Name: l[swv1.LabelClaimName]}, true
}

// podClaimNames indexes a pod by swv1.PodClaimNames.
func podClaimNames(o client.Object) []string {
	if p, ok := o.(*corev1.Pod); ok {
		return swv1.PodClaimNames(p)
	}
	return nil
}

// slimPod keeps only what the controller reads of a pod, so that caching every pod in a large
// cluster stays cheap: its metadata, node, claim volumes and phase, and for ShareWarden's own
// server pods also their annotations (the spec hash a roll compares, the client allowlist) and
// conditions (Ready). A server pod's containers, probes and container statuses are what the
// controller built; it compares the spec hash, never the spec, and patches (never updates)
// pods, so what it drops here is never written back.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		TypeMeta:   p.TypeMeta,
		ObjectMeta: p.ObjectMeta,
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status:     corev1.PodStatus{Phase: p.Status.Phase},
	}
	slim.ManagedFields = nil
	if p.Labels[swv1.LabelManagedBy] == swv1.ManagedByController {
		slim.Status.Conditions = p.Status.Conditions
	} else {
		slim.Annotations = nil
	}
	for _, v := range p.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			slim.Spec.Volumes = append(slim.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: v.PersistentVolumeClaim}})
		case v.Ephemeral != nil:
			slim.Spec.Volumes = append(slim.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}})
		}
	}
	return slim, nil
}
