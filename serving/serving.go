// Package serving is how ShareWarden's HTTPS components (the webhook and the extender) serve:
// through k8s.io/apiserver's secure serving, as Kubernetes' own components do, so that they
// share its flags and reload their certificate files when they change.
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
