package app

import (
	"context"
	"strings"
	"testing"

	"github.com/sharewarden/sharewarden/webhook"
)

func TestWebhookFlagsReachOptions(t *testing.T) {
	var got *webhook.Options
	cmd := newWebhookCommandWith(func(_ context.Context, o *webhook.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--secure-port=7443", "--tls-cert-file=/t/c", "--tls-private-key-file=/t/k",
		"--managed-storage-class=nfs-shared", "--scheduler-name=second", "--kubeconfig=/kc"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.SecureServing.BindPort != 7443 || got.SecureServing.ServerCert.CertKey.CertFile != "/t/c" ||
		got.ManagedClass != "nfs-shared" || got.SchedulerName != "second" || got.Kubeconfig != "/kc" {
		t.Errorf("options not bound: %+v", got)
	}
}

func TestWebhookRefusesInvalidOptions(t *testing.T) {
	ran := false
	cmd := newWebhookCommandWith(func(context.Context, *webhook.Options) error { ran = true; return nil })
	cmd.SetArgs([]string{"--managed-storage-class=Bad_Name"})
	err := cmd.ExecuteContext(context.Background())
	if err == nil || ran {
		t.Fatalf("ran=%v err=%v", ran, err)
	}
	for _, want := range []string{"--tls-cert-file", "--managed-storage-class"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
}
