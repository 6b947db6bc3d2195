package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sharewarden/sharewarden/fencing"
)

// RunFenced runs the agent behind the volume's lease: ganesha starts only once this server
// holds the lease and is killed the moment it cannot renew it (see package fencing). After a
// clean stop the lease is released so that a successor starts at once. With the client
// allowlist on, the agent also watches its own pod (named by the lease identity, in the lease
// namespace) for the clients to admit.
func RunFenced(ctx context.Context, opts Options, lease fencing.HolderOptions) error {
	if !lease.Enabled {
		log.FromContext(ctx).Info("self-fencing is off: this server may serve alongside another one; use only in tests")
	} else if err := lease.Validate(); err != nil {
		return fmt.Errorf("invalid lease options: %w", err)
	}
	if !lease.Enabled && !opts.ClientAllowlist {
		return Run(ctx, opts)
	}
	cfg, err := lease.RESTConfig("sharewarden-nfs-server")
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	gate := Ungated
	var h *fencing.Holder
	if lease.Enabled {
		if h, err = fencing.NewHolder(lease, cs.CoordinationV1(), opts.VolumeID); err != nil {
			return err
		}
		gate = h.Gate
	}
	a, err := New(opts, gate)
	if err != nil {
		return err
	}
	if opts.ClientAllowlist {
		pod, uid := fencing.ParseHolder(lease.Identity)
		if pod == "" || lease.Namespace == "" {
			return errors.New("--client-allowlist needs the server pod's name and namespace ($POD_NAME, $POD_NAMESPACE or --lease-holder, --lease-namespace)")
		}
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go WatchAllowedClients(wctx, cs.CoreV1().Pods(lease.Namespace), pod, uid, a.SetAllowedClients)
	}
	if h != nil {
		h.Metrics = fencing.NewHolderMetrics(a.VolumeRegisterer())
	}
	if err := a.Run(ctx); err != nil || h == nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return h.Release(rctx)
}
