package app

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/nfsserver"
)

func TestNFSServerCommandBindsFlags(t *testing.T) {
	var got nfsserver.Options
	cmd := newNFSServerCommandWith(func(_ context.Context, o nfsserver.Options) error {
		got = o
		return nil
	})
	cmd.SetArgs([]string{"--volume-id=uid-1", "--nfs-address=127.0.0.2:2049", "--grace=30s", "--squash=root_squash"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := nfsserver.DefaultOptions()
	want.VolumeID, want.NFSAddress, want.Grace, want.Squash = "uid-1", "127.0.0.2:2049", 30*time.Second, nfsserver.SquashRoot
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("run got %+v, want %+v", got, want)
	}
}
