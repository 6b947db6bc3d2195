// Package serving is how ShareWarden's HTTPS components (the webhook and the extender) serve:
// through k8s.io/apiserver's secure serving, as Kubernetes' own components do, so that they
// share its flags and reload their certificate files when they change; and how they run the
// informer caches they answer from, ready once those have synced.
package serving

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/apiserver/pkg/server"
	apiserveroptions "k8s.io/apiserver/pkg/server/options"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// ServeTLS serves h over HTTPS as ss says until ctx ends, and returns at once with the address
// it listens on and a channel closed when the server has stopped. The certificate and key files
// are watched and reloaded when they change, so a rotated certificate is served without a
// restart.
func ServeTLS(ctx context.Context, ss *apiserveroptions.SecureServingOptions, h http.Handler, shutdownTimeout time.Duration) (net.Addr, <-chan struct{}, error) {
	var serving *server.SecureServingInfo
	if err := ss.ApplyTo(&serving); err != nil {
		return nil, nil, fmt.Errorf("setting up HTTPS: %w", err)
	}
	if serving == nil {
		return nil, nil, errors.New("setting up HTTPS: no listener (is --secure-port 0?)")
	}
	if serving.Cert == nil {
		_ = serving.Listener.Close()
		return nil, nil, errors.New("setting up HTTPS: no serving certificate (--tls-cert-file, --tls-private-key-file)")
	}
	stopped, _, err := serving.Serve(h, shutdownTimeout, ctx.Done())
	if err != nil {
		_ = serving.Listener.Close()
		return nil, nil, fmt.Errorf("serving HTTPS: %w", err)
	}
	return serving.Listener.Addr(), stopped, nil
}

// RunInformers runs informers until ctx ends, and calls ready once they have synced (and every
// alsoSynced with them, e.g. event handler registrations). It returns nil when ctx ends, or an
// error as soon as the informers stop by themselves; the caller then stops its servers.
func RunInformers(ctx context.Context, informers cache.Cache, ready func(), alsoSynced ...toolscache.InformerSynced) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- informers.Start(ctx) }()
	go func() {
		if !informers.WaitForCacheSync(ctx) || !toolscache.WaitForCacheSync(ctx.Done(), alsoSynced...) {
			return
		}
		ready()
		logf.FromContext(ctx).Info("informer caches synced; ready")
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-done:
		if err != nil {
			return fmt.Errorf("informer cache stopped: %w", err)
		}
		return nil
	}
}
