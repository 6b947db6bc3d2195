// Package app builds the sharewarden command tree: one subcommand per role, each binding its
// flags into the role's Options and handing them to the role's run function.
package app

import (
	"flag"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
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
			ctrl.SetLogger(ctrlzap.New(ctrlzap.UseFlagOptions(&logOpts)))
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
	)
	return root
}
