// Package app builds the sharewarden command tree: one subcommand per role, each binding its
// flags into the role's Options and handing them to the role's run function.
package app

import (
	"context"
	"flag"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	ctrlzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// NewCommand returns the root command with every role as a subcommand.
func NewCommand() *cobra.Command {
	logOpts := ctrlzap.Options{Development: false}
	root := &cobra.Command{
		Use:   "sharewarden",
		Short: "ReadWriteMany volumes from any ReadWriteOnce storage class",
		Long: `ShareWarden turns RWX claims on RWO storage classes into per-volume NFS servers
with fencing and fast failover. Each role below runs as its own process.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			// One logger for the process: client-go and the apiserver libraries log through
			// klog, which then writes through the same zap logger as ShareWarden's own code.
			logger := ctrlzap.New(ctrlzap.UseFlagOptions(&logOpts))
			ctrl.SetLogger(logger)
			klog.SetLogger(logger)
		},
	}
	gfs := flag.NewFlagSet("log", flag.ContinueOnError)
	logOpts.BindFlags(gfs)
	root.PersistentFlags().AddGoFlagSet(gfs)

	root.AddCommand(
		newWebhookCommand(),
		newExtenderCommand(),
		newControllerCommand(),
		newNFSServerCommand(),
		newCSINodeCommand(),
	)
	return root
}

// runRole is every role's RunE: the options are validated before anything starts (so that a
// bad flag is reported, all problems at once, before any connection is made), then the role
// runs with its own named logger in the context.
func runRole(cmd *cobra.Command, name string, validate func() error, run func(context.Context) error) error {
	if err := validate(); err != nil {
		return err
	}
	logger := ctrl.Log.WithName(name)
	setMemoryLimit(logger)
	return run(logf.IntoContext(cmd.Context(), logger))
}
