package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/sharewarden/sharewarden/serving"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/server/healthz"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Run serves the webhook until ctx ends: it starts informers for storage classes and claims,
// serves HTTPS with the certificate files (reloaded when they change), and reports ready once
// the informer caches have synced.
func Run(ctx context.Context, opts *Options) error {
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	log := logf.FromContext(ctx)
	cfg, err := opts.RESTConfig("sharewarden-webhook")
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(storagev1.AddToScheme(scheme))

	informers, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return fmt.Errorf("creating informer cache: %w", err)
	}
	for _, obj := range []client.Object{&storagev1.StorageClass{}, &corev1.PersistentVolumeClaim{}} {
		if _, err := informers.GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("registering informer for %T: %w", obj, err)
		}
	}
	api, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating API client: %w", err)
	}

	var synced atomic.Bool
	srv, err := NewServer(ctx, opts.Config, ReadThrough{Cache: informers, API: api},
		healthz.NamedCheck("informer-sync", func(*http.Request) error {
			if !synced.Load() {
				return errors.New("informer caches not synced yet")
			}
			return nil
		}))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addr, stopped, err := serving.ServeTLS(ctx, opts.SecureServing, srv, opts.ShutdownTimeout)
	if err != nil {
		return err
	}
	log.Info("serving admission webhook", "address", addr.String(),
		"managedStorageClass", opts.ManagedClass, "schedulerName", opts.SchedulerName, "serverSchedulerName", opts.ServerSchedulerName)
	runErr := serving.RunInformers(ctx, informers, func() { synced.Store(true) })
	cancel()
	<-stopped
	log.Info("admission webhook stopped")
	return runErr
}
