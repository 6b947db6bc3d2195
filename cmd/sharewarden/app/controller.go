package app

import (
	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/provisioner"
)

func newControllerCommand() *cobra.Command {
	return newControllerCommandWith(func(cmd *cobra.Command, opts provisioner.Options) error {
		return provisioner.Run(cmd.Context(), opts)
	})
}

func newControllerCommandWith(run func(*cobra.Command, provisioner.Options) error) *cobra.Command {
	opts := provisioner.NewOptions()
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Provisioner: backing claims, NFS servers, Services and PVs for RWX claims; SharedVolume status",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return run(cmd, opts) },
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
