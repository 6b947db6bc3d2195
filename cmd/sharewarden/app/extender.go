package app

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/extender"
)

func newExtenderCommand() *cobra.Command {
	return newExtenderCommandWith(extender.Run)
}

func newExtenderCommandWith(run func(context.Context, *extender.Options) error) *cobra.Command {
	opts := extender.NewOptions()
	cmd := &cobra.Command{
		Use:   "extender",
		Short: "kube-scheduler extender: places NFS servers near their data, consumers off fenced nodes",
		Long: `Serves kube-scheduler's extender protocol (filter and prioritize under --url-prefix,
nodeCacheCapable) over HTTPS, or plain HTTP on loopback with --secure-port=0 --http-address.
Only pods carrying the webhook's markers reach it (see deploy/scheduler and docs/extender.md).
Other paths: /healthz, /readyz (ready once the informer caches synced), /metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRole(cmd, "extender", opts.Validate, func(ctx context.Context) error { return run(ctx, opts) })
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
