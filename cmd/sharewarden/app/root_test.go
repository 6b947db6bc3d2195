package app

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sharewarden/sharewarden/provisioner"
)

func TestHelpListsEveryRole(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"webhook", "extender", "controller", "nfs-server"} {
		if !strings.Contains(out.String(), "\n  "+role+" ") {
			t.Errorf("--help does not list %q:\n%s", role, out.String())
		}
	}
}

func TestControllerRefusesInvalidOptions(t *testing.T) {
	ran := false
	cmd := newControllerCommandWith(func(context.Context, *provisioner.Options) error { ran = true; return nil })
	cmd.SetArgs([]string{"--workers=0", "--kube-api-qps=-1"})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || ran {
		t.Fatalf("ran=%v err=%v", ran, err)
	}
	for _, want := range []string{"--workers", "--kube-api-qps"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
