package app

import (
	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/test/demo"
)

func newDemoCommand() *cobra.Command {
	return newDemoCommandWith(func(cmd *cobra.Command, opts demo.Options) error {
		return demo.Run(cmd.Context(), opts, cmd.OutOrStdout())
	})
}

func newDemoCommandWith(run func(*cobra.Command, demo.Options) error) *cobra.Command {
	var opts demo.Options
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run ShareWarden on a local control plane (etcd, apiserver, scheduler, kwok nodes) and show it working",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return run(cmd, opts) },
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
