package csidriver

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// IdentityServer is the CSI identity service.
type IdentityServer struct {
	csi.UnimplementedIdentityServer
	Version string
	// Ready reports whether the driver can serve requests (nil: always).
	Ready func() bool
}

// GetPluginInfo names the driver.
func (i *IdentityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	v := i.Version
	if v == "" {
		v = "dev"
	}
	return &csi.GetPluginInfoResponse{Name: DriverName, VendorVersion: v}, nil
}

// GetPluginCapabilities: none beyond the node service for now; the controller service is
// announced once it is served.
func (i *IdentityServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

// Probe tells whether the driver is ready.
func (i *IdentityServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	ready := i.Ready == nil || i.Ready()
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(ready)}, nil
}
