package app

import (
	"context"
	"strings"
	"testing"

	"github.com/sharewarden/sharewarden/csidriver"
)

func TestCSINodeFlagsReachOptions(t *testing.T) {
	var got *csidriver.Options
	cmd := newCSINodeCommandWith(func(_ context.Context, o *csidriver.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--endpoint=unix:///var/lib/kubelet/plugins/nfs.sharewarden.io/csi.sock", "--node-name=node-a"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Endpoint != "unix:///var/lib/kubelet/plugins/nfs.sharewarden.io/csi.sock" || got.NodeName != "node-a" {
		t.Errorf("options not bound: %+v", got)
	}
}

func TestCSINodeRefusesInvalidOptions(t *testing.T) {
	t.Setenv("NODE_NAME", "")
	ran := false
	cmd := newCSINodeCommandWith(func(context.Context, *csidriver.Options) error { ran = true; return nil })
	cmd.SetArgs([]string{"--endpoint=tcp://127.0.0.1:1", "--node-name="})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || ran {
		t.Fatalf("ran=%v err=%v", ran, err)
	}
	for _, want := range []string{"unix://", "--node-name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
