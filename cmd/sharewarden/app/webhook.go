package app

import (
	"context"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sharewarden/sharewarden/webhook"
)

func newWebhookCommand() *cobra.Command {
	return newWebhookCommandWith(webhook.Run)
}

func newWebhookCommandWith(run func(context.Context, *webhook.Options) error) *cobra.Command {
	opts := webhook.NewOptions()
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Mutating admission webhook: rewrites RWX claims, marks consumer and server pods",
		Long: `Serves the mutating admission webhook over HTTPS: RWX and ROX claims on storage classes
annotated sharewarden.io/rwx: "nfs" are rewritten to the managed class, pods that mount them (and
ShareWarden's NFS server pods) are marked for the scheduler extender. Paths:
/mutate/persistentvolumeclaims, /mutate/pods, /healthz, /readyz, /metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return err
			}
			return run(logf.IntoContext(cmd.Context(), ctrl.Log.WithName("webhook")), opts)
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
