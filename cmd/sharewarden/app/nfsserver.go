package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/nfsserver"
)

func newNFSServerCommand() *cobra.Command {
	return newNFSServerCommandWith(nfsserver.RunFenced)
}

func newNFSServerCommandWith(run func(context.Context, nfsserver.Options, fencing.HolderOptions) error) *cobra.Command {
	opts := nfsserver.DefaultOptions()
	lease := fencing.DefaultHolderOptions()
	cmd := &cobra.Command{
		Use:   "nfs-server",
		Short: "NFS server agent: holds the volume's lease and runs nfs-ganesha while it does",
		Long: `The NFS server agent runs in each volume's server pod, over the mounted backing volume.
It renders nfs-ganesha's configuration (NFSv4.1+ over TCP, a pinned fsid and server owner, recovery
state on the volume itself), waits until it holds the volume's Lease, runs ganesha as its child and
kills it at once when the Lease cannot be renewed in time (self-fencing), and exits when ganesha
dies. /healthz answers 200 only while ganesha answers an RPC NULL call on its NFS port.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			validate := func() error {
				var leaseErr error
				if err := lease.Validate(); err != nil {
					leaseErr = fmt.Errorf("invalid lease options: %w", err)
				}
				return errors.Join(opts.Validate(), leaseErr)
			}
			return runRole(cmd, "nfs-server", validate, func(ctx context.Context) error { return run(ctx, opts, lease) })
		},
	}
	opts.AddFlags(cmd.Flags())
	lease.AddFlags(cmd.Flags())
	return cmd
}
