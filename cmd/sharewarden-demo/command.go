package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/cmd/sharewarden/app"
	"github.com/sharewarden/sharewarden/test/demo"
)

// run is the demo itself; tests swap it.
func run(ctx context.Context, opts demo.Options) error { return demo.Run(ctx, opts, os.Stdout) }

// newCommand binds the demo's flags into its Options and hands them to run. The demo plays the
// kubelet for NFS server pods by running this very binary as `nfs-server`, so every role of
// sharewarden is a subcommand here too, as it is there.
func newCommand(run func(context.Context, demo.Options) error) *cobra.Command {
	var opts demo.Options
	cmd := app.NewCommand()
	cmd.Use = "sharewarden-demo"
	cmd.Short = "Run ShareWarden on a local control plane (etcd, apiserver, scheduler, kwok nodes) and show it working"
	cmd.Long = cmd.Short + `.

The subcommands are sharewarden's roles, for the processes the demo starts from this binary.`
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), opts) }
	opts.AddFlags(cmd.Flags())
	return cmd
}
