package provisioner

import (
	"context"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"
)

// CreateVolume refuses a malformed request with InvalidArgument, and a clone or restore of a
// source that does not exist with NotFound, whether or not the request names a claim.
func TestCreateVolumeChecksBeforeClaim(t *testing.T) {
	e := newEnv(t)
	c := &CSIController{Reconciler: e.r}
	mountRW := []*csi.VolumeCapability{{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER},
	}}
	claimParams := map[string]string{ParamClaimNamespace: "app", ParamClaimName: "data"}
	fromVolume := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "pvc-0000"}}}
	fromSnapshot := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: "gone"}}}
	cases := []struct {
		name string
		req  *csi.CreateVolumeRequest
		code codes.Code
		msg  string
	}{
		{"no name", &csi.CreateVolumeRequest{VolumeCapabilities: mountRW, Parameters: claimParams}, codes.InvalidArgument, "name is empty"},
		{"no capabilities", &csi.CreateVolumeRequest{Name: "pvc-" + e.uid, Parameters: claimParams}, codes.InvalidArgument, "volume_capabilities is empty"},
		{"no claim", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: mountRW}, codes.InvalidArgument, "--extra-create-metadata"},
		{"missing source volume", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: mountRW, VolumeContentSource: fromVolume}, codes.NotFound, "pvc-0000 does not exist"},
		{"missing source snapshot", &csi.CreateVolumeRequest{Name: "v", VolumeCapabilities: mountRW, VolumeContentSource: fromSnapshot}, codes.NotFound, "gone does not exist"},
		{"missing source, claim named", &csi.CreateVolumeRequest{Name: "pvc-" + e.uid, VolumeCapabilities: mountRW, Parameters: claimParams, VolumeContentSource: fromVolume}, codes.NotFound, "does not exist"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateVolume(context.Background(), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("got %v, want %s with %q", err, tc.code, tc.msg)
			}
		})
	}
}

// Any CSI snapshot name becomes an object name, the same every time; csi-snapshotter's stay.
func TestBackingSnapshotName(t *testing.T) {
	for _, name := range []string{"snapshot-6f1d0c9e-3b1a-4d4f-9b8e-2a6c7d8e9f01", "a.b-c"} {
		if got := backingSnapshotName(name); got != name {
			t.Errorf("%q became %q, want it kept", name, got)
		}
	}
	seen := map[string]string{}
	for _, name := range []string{"Upper-Case-1A2B", "with space", "a/b", strings.Repeat("x", 300), "-leading", "Upper-Case-1A2C"} {
		got := backingSnapshotName(name)
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("%q became %q, not an object name: %v", name, got, errs)
		}
		if again := backingSnapshotName(name); again != got {
			t.Errorf("%q became %q, then %q", name, got, again)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("%q and %q both became %q", name, other, got)
		}
		seen[got] = name
	}
}
