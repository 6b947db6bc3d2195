package app

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/sharewarden/sharewarden/test/demo"
)

func TestHelpListsEveryRole(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"webhook", "extender", "controller", "nfs-server", "demo"} {
		if !strings.Contains(out.String(), "\n  "+role+" ") {
			t.Errorf("--help does not list %q:\n%s", role, out.String())
		}
	}
}

func TestUnbuiltRolesFail(t *testing.T) {
	for _, c := range NewCommand().Commands() {
		if !strings.Contains(c.Short, "not implemented yet") {
			continue
		}
		cmd := NewCommand()
		cmd.SetArgs([]string{c.Name()})
		err := cmd.ExecuteContext(context.Background())
		if !errors.Is(err, ErrNotImplemented) {
			t.Errorf("%s: want ErrNotImplemented, got %v", c.Name(), err)
		}
	}
}

func TestDemoFlagsReachOptions(t *testing.T) {
	var got demo.Options
	cmd := newDemoCommandWith(func(_ *cobra.Command, o demo.Options) error { got = o; return nil })
	cmd.SetArgs([]string{"--duration=90s", "--bin-dir=/x", "--work-dir=/w"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := demo.Options{Duration: 90 * time.Second, BinDir: "/x", WorkDir: "/w"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
