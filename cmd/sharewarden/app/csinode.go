package app

import (
	"context"

	"github.com/spf13/cobra"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/csidriver"
)

func newCSINodeCommand() *cobra.Command {
	return newCSINodeCommandWith(csidriver.Run)
}

func newCSINodeCommandWith(run func(context.Context, *csidriver.Options) error) *cobra.Command {
	opts := csidriver.NewOptions()
	cmd := &cobra.Command{
		Use:   "csi-node",
		Short: "CSI node plugin (" + swv1.CSIDriverName + "): mounts a volume's export for kubelet",
		Long: `Serves the CSI identity and node services on a unix socket (--endpoint): NodePublishVolume
mounts the volume's Service IP export over NFSv4.2 (4.1 fallback) with the class's mount options
merged over safe defaults and checked, so a typo is an InvalidArgument error on the pod's events
rather than a pod stuck in ContainerCreating; kubelet then applies fsGroup and SELinux labels.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRole(cmd, "csi-node", opts.Validate, func(ctx context.Context) error { return run(ctx, opts) })
		},
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
