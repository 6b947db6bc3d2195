package fencing

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/report"
)

// SetupOptions configure the controller side of fencing in a manager.
type SetupOptions struct {
	Fencer FencerConfig
	Nodes  NodeFencerConfig
	// Workers is how many leases are reconciled in parallel.
	Workers int
	// OnStep, when set, is called after each fencing step's write (the crash tests stop there).
	OnStep func(ctx context.Context, step Step, lease types.NamespacedName)
}

// SetupWithManager adds the Fencer (keyed by server lease) and the NodeFencer (keyed by node,
// and woken by the SharedVolumes that list the node as fenced) to mgr, with the pod-by-node
// index the NodeFencer's eviction lists by. Their Events come from "sharewarden-fencer", their
// metrics go on controller-runtime's registry.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts SetupOptions) error {
	recorder := mgr.GetEventRecorder("sharewarden-fencer")
	m := NewMetrics(metrics.Registry)
	wake := make(chan event.GenericEvent, 1024)
	f := &Fencer{Client: mgr.GetClient(), Recorder: recorder, Metrics: m, OnStep: opts.OnStep, Config: opts.Fencer, Wake: wake, Done: ctx.Done()}
	err := ctrl.NewControllerManagedBy(mgr).Named("fencer").
		// Every change of a server lease but a renewal is reconciled; a renewal only moves the
		// lease's deadline, whose timer comes back through wake.
		Watches(&coordinationv1.Lease{}, leaseEvents(f)).
		WatchesRawSource(source.Channel(wake, &handler.EnqueueRequestForObject{})).
		// One controller per manager; names repeat only when tests run several managers in a process.
		WithOptions(controller.Options{MaxConcurrentReconciles: max(opts.Workers, 1), SkipNameValidation: ptr.To(true)}).
		Complete(f)
	if err != nil {
		return fmt.Errorf("building fencer: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &corev1.Pod{}, IndexPodNode, podNode); err != nil {
		return fmt.Errorf("indexing pods by node: %w", err)
	}
	nf := &NodeFencer{Client: mgr.GetClient(), Recorder: recorder, Metrics: m, Config: opts.Nodes}
	err = ctrl.NewControllerManagedBy(mgr).Named("node-fencer").
		For(&corev1.Node{}).
		Watches(&swv1.SharedVolume{}, handler.EnqueueRequestsFromMapFunc(fencedNodes)).
		WithOptions(controller.Options{SkipNameValidation: ptr.To(true)}).
		Complete(nf)
	if err != nil {
		return fmt.Errorf("building node fencer: %w", err)
	}
	report.Register(metrics.Registry, NewNodeCollector(mgr.GetClient(), mgr.Elected()))
	return nil
}

// leaseEvents enqueues a lease on its creation, deletion and every update but a renewal (a
// new holder, a release, the fencing annotations); a renewal goes to f.Renewed, which enqueues
// nothing while it can arm the lease's deadline.
func leaseEvents(f *Fencer) handler.Funcs {
	enqueue := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], o client.Object) {
		q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o)})
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, e.Object)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			old, ok1 := e.ObjectOld.(*coordinationv1.Lease)
			cur, ok2 := e.ObjectNew.(*coordinationv1.Lease)
			if ok1 && ok2 && IsRenewal(old, cur) && f.Renewed(cur) {
				return
			}
			enqueue(q, e.ObjectNew)
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, e.Object)
		},
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, e.Object)
		},
	}
}

// podNode indexes a pod by IndexPodNode.
func podNode(o client.Object) []string {
	if n := o.(*corev1.Pod).Spec.NodeName; n != "" {
		return []string{n}
	}
	return nil
}

// fencedNodes maps a SharedVolume to the nodes it lists as fenced.
func fencedNodes(_ context.Context, o client.Object) []reconcile.Request {
	var out []reconcile.Request
	for _, n := range o.(*swv1.SharedVolume).Status.FencedNodes {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKey{Name: n}})
	}
	return out
}
