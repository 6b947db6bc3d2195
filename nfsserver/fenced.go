package nfsserver

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sharewarden/sharewarden/fencing"
)

// RunFenced runs the agent behind the volume's lease: ganesha starts only once this server
// holds the lease and is killed the moment it cannot renew it (see package fencing). After a
// clean stop the lease is released so that a successor starts at once.
func RunFenced(ctx context.Context, opts Options, lease fencing.HolderOptions) error {
	if !lease.Enabled {
		log.FromContext(ctx).Info("self-fencing is off: this server may serve alongside another one; use only in tests")
		return Run(ctx, opts)
	}
	if err := lease.Validate(); err != nil {
		return fmt.Errorf("invalid lease options: %w", err)
	}
	cfg, err := lease.RESTConfig("sharewarden-nfs-server")
	if err != nil {
		return fmt.Errorf("lease client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("lease client: %w", err)
	}
	h, err := fencing.NewHolder(lease, cs.CoordinationV1(), opts.VolumeID)
	if err != nil {
		return err
	}
	a, err := New(opts, h.Gate)
	if err != nil {
		return err
	}
	h.Metrics = fencing.NewHolderMetrics(a.VolumeRegisterer())
	if err := a.Run(ctx); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return h.Release(rctx)
}
