package app

import (
	"context"
	"strings"
	"testing"

	"github.com/sharewarden/sharewarden/extender"
)

func TestExtenderFlagsReachOptions(t *testing.T) {
	var got *extender.Options
	cmd := newExtenderCommandWith(func(_ context.Context, o *extender.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--secure-port=0", "--http-address=127.0.0.1:8099", "--url-prefix=/sw",
		"--zone-label=example.com/zone", "--max-request-bytes=1024", "--kubeconfig=/kc", "--kube-api-qps=7"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.SecureServing.BindPort != 0 || got.HTTPAddress != "127.0.0.1:8099" || got.URLPrefix != "/sw" ||
		got.ZoneLabel != "example.com/zone" || got.MaxRequestBytes != 1024 || got.Kubeconfig != "/kc" || got.KubeAPIQPS != 7 {
		t.Errorf("options not bound: %+v", got)
	}
}

func TestExtenderRefusesInvalidOptions(t *testing.T) {
	ran := false
	cmd := newExtenderCommandWith(func(context.Context, *extender.Options) error { ran = true; return nil })
	cmd.SetArgs([]string{"--secure-port=0", "--http-address=0.0.0.0:8099", "--url-prefix=nope"})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || ran {
		t.Fatalf("ran=%v err=%v", ran, err)
	}
	for _, want := range []string{"loopback", "--url-prefix"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
