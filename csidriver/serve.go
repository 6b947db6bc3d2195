package csidriver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	mount "k8s.io/mount-utils"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Options configure the CSI node plugin.
type Options struct {
	// Endpoint is the unix socket kubelet's registrar and the sidecars reach the driver at.
	Endpoint string
	// NodeName is this node's name (the downward API's spec.nodeName).
	NodeName string
	Version  string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{Endpoint: "unix:///csi/csi.sock", NodeName: os.Getenv("NODE_NAME")}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Endpoint, "endpoint", o.Endpoint, "CSI endpoint, unix:///path/to/socket")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "this node's name (default $NODE_NAME)")
}

// Validate reports every bad option.
func (o Options) Validate() error {
	var errs []error
	if _, err := socketPath(o.Endpoint); err != nil {
		errs = append(errs, err)
	}
	if o.NodeName == "" {
		errs = append(errs, errors.New("--node-name (or $NODE_NAME) must be set"))
	}
	return errors.Join(errs...)
}

// socketPath is the file of a unix:// endpoint.
func socketPath(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" || (u.Path == "" && u.Host == "") {
		return "", fmt.Errorf("--endpoint %q: want unix:///path/to/socket", endpoint)
	}
	return filepath.Join(u.Host, u.Path), nil
}

// Run serves the identity and node services on opts.Endpoint until ctx ends.
func Run(ctx context.Context, opts *Options) error {
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("invalid options: %w", err)
	}
	return Serve(ctx, opts.Endpoint,
		&IdentityServer{Version: opts.Version}, nil,
		&NodeServer{NodeID: opts.NodeName, Mounter: mount.New("")})
}

// CheckEndpoint checks a unix:// CSI endpoint.
func CheckEndpoint(endpoint string) error {
	_, err := socketPath(endpoint)
	return err
}

// Serve serves the given CSI services (controller and node may be nil) on a unix socket
// endpoint until ctx ends. A stale socket left by an earlier process is replaced.
func Serve(ctx context.Context, endpoint string, identity csi.IdentityServer, controller csi.ControllerServer, node csi.NodeServer) error {
	path, err := socketPath(endpoint)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", path, err)
	}
	logger := log.FromContext(ctx)
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(log.IntoContext(ctx, logger), req)
		if err != nil {
			logger.Error(err, "CSI call failed", "method", info.FullMethod)
		} else {
			logger.V(1).Info("CSI call", "method", info.FullMethod)
		}
		return resp, err
	}))
	csi.RegisterIdentityServer(srv, identity)
	if controller != nil {
		csi.RegisterControllerServer(srv, controller)
	}
	if node != nil {
		csi.RegisterNodeServer(srv, node)
	}
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	logger.Info("serving CSI", "endpoint", endpoint, "driver", swv1.CSIDriverName)
	if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving CSI: %w", err)
	}
	return nil
}
