// Command sharewarden-demo runs ShareWarden on a local control plane and narrates what happens
// (`make demo`). It links the test harness (test/cluster, test/demo), so it is a binary of its
// own: the shipped sharewarden never carries a control-plane launcher.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newCommand(run).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sharewarden-demo:", err)
		os.Exit(1)
	}
}
