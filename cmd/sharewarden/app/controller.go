package app

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/provisioner"
)

func newControllerCommand() *cobra.Command {
	return newControllerCommandWith(provisioner.Run)
}

func newControllerCommandWith(run func(context.Context, *provisioner.Options) error) *cobra.Command {
	opts := provisioner.NewOptions()
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Provisioner and fencer: backing claims, NFS servers, Services and PVs for RWX claims; SharedVolume status; failover",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRole(cmd, "controller", opts.Validate, func(ctx context.Context) error { return run(ctx, opts) })
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
