package csidriver

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Endpoint: "unix:///csi/csi.sock", NodeName: "n"}, ""},
		{Options{Endpoint: "tcp://127.0.0.1:1", NodeName: "n"}, "want unix://"},
		{Options{Endpoint: "unix://", NodeName: "n"}, "want unix://"},
		{Options{Endpoint: "unix:///csi/csi.sock"}, "--node-name"},
	} {
		err := tc.opts.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: want %q, got %v", tc.opts, tc.want, err)
		}
	}
}

// TestServeOverUnixSocket: the services answer over a real gRPC connection on a unix socket,
// as kubelet and the sidecars call them, and a stale socket is replaced.
func TestServeOverUnixSocket(t *testing.T) {
	dir := t.TempDir()
	endpoint := "unix://" + filepath.Join(dir, "csi.sock")
	fake := mount.NewFakeMounter(nil)
	for round := range 2 { // the second round finds the first one's socket file
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx, endpoint, &IdentityServer{Version: "v1"}, nil, &NodeServer{NodeID: "node-a", Mounter: fake})
		}()
		conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		info, err := csi.NewIdentityClient(conn).GetPluginInfo(cctx, &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
		if err != nil || info.Name != swv1.CSIDriverName {
			t.Fatalf("round %d: plugin info %+v, %v", round, info, err)
		}
		node := csi.NewNodeClient(conn)
		if _, err := node.NodePublishVolume(cctx, publishRequest(filepath.Join(dir, "target"), "bogus")); status.Code(err) != codes.InvalidArgument {
			t.Errorf("bad option over gRPC: %v", err)
		}
		if _, err := node.NodePublishVolume(cctx, publishRequest(filepath.Join(dir, "target"))); err != nil {
			t.Errorf("publish over gRPC: %v", err)
		}
		ccancel()
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("round %d: serve: %v", round, err)
		}
	}
	if mounts, _ := fake.List(); len(mounts) != 1 {
		t.Errorf("mounts %+v", mounts)
	}
}
