package app

import (
	"context"

	"github.com/spf13/cobra"

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
			return runRole(cmd, "webhook", opts.Validate, func(ctx context.Context) error { return run(ctx, opts) })
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
