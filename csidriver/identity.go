package csidriver

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/wrapperspb"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// IdentityServer is the CSI identity service.
type IdentityServer struct {
	csi.UnimplementedIdentityServer
	Version string
	// Controller: the controller service is served too.
	Controller bool
	// Ready reports whether the driver can serve requests (nil: always).
	Ready func() bool
}

// GetPluginInfo names the driver.
func (i *IdentityServer) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	v := i.Version
	if v == "" {
		v = "dev"
	}
	return &csi.GetPluginInfoResponse{Name: swv1.CSIDriverName, VendorVersion: v}, nil
}

// GetPluginCapabilities announces the controller service where it is served, and online
// expansion (the backing volume grows while the server serves it).
func (i *IdentityServer) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	if !i.Controller {
		return &csi.GetPluginCapabilitiesResponse{}, nil
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: csi.PluginCapability_Service_CONTROLLER_SERVICE}}},
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}}, nil
}

// Probe tells whether the driver is ready.
func (i *IdentityServer) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	ready := i.Ready == nil || i.Ready()
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(ready)}, nil
}
