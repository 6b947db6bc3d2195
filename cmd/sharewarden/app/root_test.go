package app

import (
	"bytes"
	"strings"
	"testing"
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
