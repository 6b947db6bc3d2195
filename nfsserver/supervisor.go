package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// supervise waits for the gate, runs ganesha, and returns when it has been reaped:
//   - ctx ends (main turns SIGTERM and SIGINT into that): ganesha gets SIGTERM, its own graceful
//     shutdown, and SIGKILL after StopTimeout; nil if it stopped in time.
//   - the gate's serving context ends first: ganesha gets SIGKILL at once; an error.
//   - ganesha exits on its own: an error saying how.
func (a *Agent) supervise(ctx context.Context) error {
	logger := log.FromContext(ctx)
	logger.Info("waiting for the gate before starting ganesha")
	serving, err := a.gate(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("waiting to serve: %w", err)
	}

	o := a.opts
	// The config is written again now: the client allowlist may have changed while waiting.
	a.awaitFirstClients(serving)
	loaded, err := a.writeConfig()
	if err != nil {
		return err
	}
	cmd := exec.Command(o.GaneshaBinary,
		"-F", // foreground: the agent is its parent and reaper
		"-L", o.GaneshaLog,
		"-f", o.ConfigPath(),
		"-p", o.PIDPath(),
		"-N", o.GaneshaLogLevel,
	)
	// ganesha puts the backing filesystem's UUID, read through blkid, into every file handle.
	// blkid trusts its cache file for a device name probed in the last 2 s, and a node's cache
	// (/run/blkid) may describe the disk that last had this device name: a handle made from that
	// UUID goes stale on the next move. So ganesha gets a cache of its own, empty on every start.
	if err := os.Remove(o.BlkidCachePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("emptying ganesha's blkid cache: %w", err)
	}
	cmd.Env = ganeshaEnv(os.Environ(), o.BlkidCachePath())
	cmd.Stdout, cmd.Stderr = a.Stdout, a.Stderr
	// Every start begins a grace period. Its end is read from ganesha's log when the log comes
	// through the agent, else assumed after the configured Grace.
	a.metrics.inGrace.Set(1)
	var graceTimer *time.Timer
	if o.logsGrace() {
		set := func(in bool) { a.metrics.inGrace.Set(boolGauge(in)) }
		cmd.Stdout = &graceWatcher{out: a.Stdout, set: set}
		cmd.Stderr = &graceWatcher{out: a.Stderr, set: set}
	} else {
		graceTimer = time.AfterFunc(o.Grace, func() { a.metrics.inGrace.Set(0) })
	}
	cmd.SysProcAttr = childAttrs()

	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child exits, so that
		// thread stays locked to this goroutine until ganesha is reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting ganesha: %w", err)
	}
	a.running.Store(true)
	a.loadedGen.Store(loaded)
	a.answered.Store(false)
	a.proc.Store(cmd.Process)
	a.metrics.running.Set(1)
	a.metrics.starts.Inc()
	logger.Info("ganesha started", "pid", cmd.Process.Pid, "address", o.NFSAddress, "pseudoPath", o.PseudoPath)
	defer func() {
		a.proc.Store(nil)
		if graceTimer != nil {
			graceTimer.Stop()
		}
		a.running.Store(false)
		a.metrics.running.Set(0)
		a.metrics.up.Set(0)
		a.metrics.inGrace.Set(0)
	}()

	select {
	case err := <-exited:
		a.metrics.exits.WithLabelValues(exitFailed).Inc()
		return fmt.Errorf("ganesha exited unexpectedly: %s", describeExit(err))

	case <-serving.Done():
		if ctx.Err() != nil {
			return a.stop(ctx, cmd, exited)
		}
		// Losing the right to serve means stop serving now: no grace, no flushing.
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := <-exited
		a.metrics.exits.WithLabelValues(exitKilled).Inc()
		logger.Info("ganesha killed: may no longer serve", "exit", describeExit(err))
		return fmt.Errorf("stopped serving: %w", context.Cause(serving))

	case <-ctx.Done():
		return a.stop(ctx, cmd, exited)
	}
}

// stop asks ganesha to shut down and waits StopTimeout before killing it.
func (a *Agent) stop(ctx context.Context, cmd *exec.Cmd, exited <-chan error) error {
	logger := log.FromContext(ctx)
	logger.Info("stopping ganesha", "signal", "SIGTERM")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		logger.Error(err, "signalling ganesha")
	}
	t := time.NewTimer(a.opts.StopTimeout)
	defer t.Stop()
	select {
	case err := <-exited:
		a.metrics.exits.WithLabelValues(exitStopped).Inc()
		logger.Info("ganesha stopped", "exit", describeExit(err))
		return nil
	case <-t.C:
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := <-exited
		a.metrics.exits.WithLabelValues(exitKilled).Inc()
		return fmt.Errorf("ganesha did not stop within %s of SIGTERM and was killed: %s", a.opts.StopTimeout, describeExit(err))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// describeExit turns cmd.Wait's error into "exit status 2", "killed by signal killed", ...
func describeExit(err error) string {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return exitErr.Error()
	}
	return err.Error()
}

// ganeshaEnv is the agent's environment for ganesha, with blkid's cache file set to blkidCache
// (any BLKID_FILE the agent was given replaced).
func ganeshaEnv(environ []string, blkidCache string) []string {
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "BLKID_FILE=") {
			env = append(env, kv)
		}
	}
	return append(env, "BLKID_FILE="+blkidCache)
}
