package extender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sharewarden/sharewarden/serving"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Run serves the extender until ctx ends: it starts informers for nodes, pods, claims, PVs and
// SharedVolumes feeding a Store, serves the verbs over HTTPS (or plain HTTP on loopback), and
// reports ready once the caches have synced.
func Run(ctx context.Context, opts *Options) error {
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	log := logf.FromContext(ctx)
	cfg, err := opts.RESTConfig("sharewarden-extender")
	if err != nil {
		return err
	}

	store := NewStore(opts.ZoneLabel, opts.Locators)
	informers, synced, err := Informers(ctx, cfg, store)
	if err != nil {
		return err
	}
	srv, err := NewServer(ctx, opts.Config, store)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, stopped, err := serve(ctx, opts, srv)
	if err != nil {
		return err
	}
	var healthStopped <-chan struct{}
	if opts.HealthAddress != "" {
		if _, healthStopped, err = servePlain(ctx, opts.HealthAddress, srv.HealthHandler(), opts.ShutdownTimeout); err != nil {
			cancel()
			<-stopped
			return err
		}
	}
	log.Info("serving scheduler extender", "address", addr.String(), "urlPrefix", opts.URLPrefix, "https", opts.HTTPAddress == "")
	runErr := serving.RunInformers(ctx, informers, func() { store.SetSynced(true) }, synced...)
	cancel()
	<-stopped
	if healthStopped != nil {
		<-healthStopped
	}
	log.Info("scheduler extender stopped")
	return runErr
}

// Informers returns the informer cache that keeps store up to date, with store's event handlers
// registered, and what tells that they have seen the initial lists. Start it with
// serving.RunInformers; mark the store synced once it is.
func Informers(ctx context.Context, cfg *rest.Config, store *Store) (cache.Cache, []toolscache.InformerSynced, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(swv1.AddToScheme(scheme))
	informers, err := cache.New(cfg, cache.Options{
		Scheme:           scheme,
		DefaultTransform: cache.TransformStripManagedFields(),
		// Every pod of the cluster is watched (consumers carry no label to select them by);
		// only what the extender reads is kept of each.
		ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {Transform: slimPod}},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating informer cache: %w", err)
	}
	regs, err := feed(ctx, informers, store)
	if err != nil {
		return nil, nil, err
	}
	synced := make([]toolscache.InformerSynced, 0, len(regs))
	for _, r := range regs {
		synced = append(synced, r.HasSynced)
	}
	return informers, synced, nil
}

// feed registers event handlers that keep store up to date.
func feed(ctx context.Context, informers cache.Cache, store *Store) ([]toolscache.ResourceEventHandlerRegistration, error) {
	key := func(o metav1.Object) types.NamespacedName {
		return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
	}
	handlers := []struct {
		obj    client.Object
		upsert func(any)
		remove func(metav1.Object)
	}{
		{&corev1.Node{}, func(o any) { store.UpsertNode(o.(*corev1.Node)) }, func(o metav1.Object) { store.DeleteNode(o.GetName()) }},
		{&corev1.Pod{}, func(o any) { store.UpsertPod(o.(*corev1.Pod)) }, func(o metav1.Object) { store.DeletePod(key(o)) }},
		{&corev1.PersistentVolumeClaim{}, func(o any) { store.UpsertClaim(o.(*corev1.PersistentVolumeClaim)) }, func(o metav1.Object) { store.DeleteClaim(key(o)) }},
		{&corev1.PersistentVolume{}, func(o any) { store.UpsertPV(o.(*corev1.PersistentVolume)) }, func(o metav1.Object) { store.DeletePV(o.GetName()) }},
		{&swv1.SharedVolume{}, func(o any) { store.UpsertSharedVolume(o.(*swv1.SharedVolume)) }, func(o metav1.Object) { store.DeleteSharedVolume(key(o)) }},
	}
	regs := make([]toolscache.ResourceEventHandlerRegistration, 0, len(handlers))
	for _, h := range handlers {
		inf, err := informers.GetInformer(ctx, h.obj)
		if err != nil {
			return nil, fmt.Errorf("registering informer for %T: %w", h.obj, err)
		}
		upsert, remove := h.upsert, h.remove
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { upsert(o) },
			UpdateFunc: func(_, o any) { upsert(o) },
			DeleteFunc: func(o any) {
				if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = t.Obj
				}
				if m, ok := o.(metav1.Object); ok {
					remove(m)
				}
			},
		})
		if err != nil {
			return nil, fmt.Errorf("adding event handler for %T: %w", h.obj, err)
		}
		regs = append(regs, reg)
	}
	return regs, nil
}

// slimPod keeps of a pod only what the Store reads: identity, labels, node, phase, deletion,
// claim volumes and the markers.
func slimPod(o any) (any, error) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return o, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}
	if role := RoleOf(p); role != RoleOther {
		marker := swv1.ResourceConsumer
		if role == RoleServer {
			marker = swv1.ResourceServer
		}
		one := corev1.ResourceList{marker: *resource.NewQuantity(1, resource.DecimalSI)}
		out.Spec.Containers = []corev1.Container{{Name: "marked", Resources: corev1.ResourceRequirements{Requests: one}}}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
				out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{Name: v.Name, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: v.PersistentVolumeClaim, Ephemeral: v.Ephemeral,
				}})
			}
		}
	} else {
		out.Labels = nil
	}
	return out, nil
}

// serve serves h as opts say (HTTPS, or plain HTTP on loopback) until ctx ends; it returns the
// address and a channel closed once the server has stopped.
func serve(ctx context.Context, opts *Options, h http.Handler) (net.Addr, <-chan struct{}, error) {
	if opts.HTTPAddress == "" {
		return serving.ServeTLS(ctx, opts.SecureServing, h, opts.ShutdownTimeout)
	}
	return servePlain(ctx, opts.HTTPAddress, h, opts.ShutdownTimeout)
}

// servePlain serves h as plain HTTP on addr until ctx ends.
func servePlain(ctx context.Context, addr string, h http.Handler, shutdownTimeout time.Duration) (net.Addr, <-chan struct{}, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf.FromContext(ctx).Error(err, "plain HTTP server stopped")
		}
	}()
	return ln.Addr(), stopped, nil
}
