package main

import (
	"context"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/test/demo"
)

func TestDemoFlagsReachOptions(t *testing.T) {
	var got demo.Options
	cmd := newCommand(func(_ context.Context, o demo.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--duration=90s", "--bin-dir=/x", "--work-dir=/w"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := demo.Options{Duration: 90 * time.Second, BinDir: "/x", WorkDir: "/w"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// The demo runs its own binary as the NFS server agent (test/serverrunner), so the role must
// be there.
func TestDemoBinaryServesTheAgentRole(t *testing.T) {
	cmd, _, err := newCommand(run).Find([]string{"nfs-server"})
	if err != nil || cmd.Name() != "nfs-server" {
		t.Fatalf("nfs-server not found: %v, %v", cmd, err)
	}
}
