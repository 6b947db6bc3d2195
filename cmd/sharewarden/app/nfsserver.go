package app

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/nfsserver"
)

func newNFSServerCommand() *cobra.Command {
	return newNFSServerCommandWith(nfsserver.Run)
}

func newNFSServerCommandWith(run func(context.Context, nfsserver.Options) error) *cobra.Command {
	opts := nfsserver.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "nfs-server",
		Short: "NFS server agent: runs nfs-ganesha for one volume, with health and metrics",
		Long: `The NFS server agent runs in each volume's server pod, over the mounted backing volume.
It renders nfs-ganesha's configuration (NFSv4.1+ over TCP, a pinned fsid and server owner, recovery
state on the volume itself), runs ganesha as its child and exits when ganesha dies. /healthz answers
200 only while ganesha answers an RPC NULL call on its NFS port.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), opts) },
	}
	opts.AddFlags(cmd.Flags())
	return cmd
}
