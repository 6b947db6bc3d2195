package kubeclient

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://%s:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

func write(t *testing.T, host string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(fmt.Sprintf(kubeconfig, host)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// --kubeconfig wins; without it $KUBECONFIG is read, as kubectl does. Limits and the user
// agent are applied either way.
func TestRESTConfigFindsTheKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", write(t, "from-env"))
	for _, tc := range []struct {
		name, flag, want string
	}{
		{"flag", write(t, "from-flag"), "https://from-flag:6443"},
		{"$KUBECONFIG", "", "https://from-env:6443"},
	} {
		o := NewOptions(7, 9)
		o.Kubeconfig = tc.flag
		cfg, err := o.RESTConfig("sharewarden-test")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if cfg.Host != tc.want || cfg.QPS != 7 || cfg.Burst != 9 || cfg.UserAgent != "sharewarden-test" {
			t.Errorf("%s: host %s qps %v burst %d agent %q", tc.name, cfg.Host, cfg.QPS, cfg.Burst, cfg.UserAgent)
		}
	}
}

func TestValidateRefusesNoRate(t *testing.T) {
	if o := NewOptions(-1, 1); o.Validate() == nil {
		t.Error("negative qps accepted")
	}
	if o := NewOptions(1, 1); o.Validate() != nil {
		t.Error("good limits refused")
	}
}
