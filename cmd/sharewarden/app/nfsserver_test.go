package app

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/nfsserver"
)

func TestNFSServerCommandBindsFlags(t *testing.T) {
	t.Setenv("POD_NAME", "sw-1")
	t.Setenv("POD_UID", "u-1")
	t.Setenv("POD_NAMESPACE", "sharewarden-system")
	var got nfsserver.Options
	var gotLease fencing.HolderOptions
	cmd := newNFSServerCommandWith(func(_ context.Context, o nfsserver.Options, l fencing.HolderOptions) error {
		got, gotLease = o, l
		return nil
	})
	cmd.SetArgs([]string{"--volume-id=uid-1", "--nfs-address=127.0.0.2:2049", "--grace=30s", "--squash=root_squash",
		"--lease-duration=12s", "--kubeconfig=/k"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := nfsserver.DefaultOptions()
	want.VolumeID, want.NFSAddress, want.Grace, want.Squash = "uid-1", "127.0.0.2:2049", 30*time.Second, nfsserver.SquashRoot
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("run got %+v, want %+v", got, want)
	}
	wantLease := fencing.DefaultHolderOptions()
	wantLease.Duration, wantLease.Kubeconfig = 12*time.Second, "/k"
	if !reflect.DeepEqual(gotLease, wantLease) || gotLease.Identity != "sw-1_u-1" || gotLease.Namespace != "sharewarden-system" {
		t.Fatalf("lease options %+v, want %+v from the downward-API env", gotLease, wantLease)
	}
}
