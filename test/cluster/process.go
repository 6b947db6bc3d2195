package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// process is one control-plane binary running as a child of the test or demo.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error

	mu      sync.Mutex
	stopped bool
}

// startProcess runs bin with args, its output appended to dir/name.log. The child is put in
// its own process group and gets SIGKILL if this process dies, so an interrupted test leaves
// nothing behind.
func startProcess(dir, name, bin string, args ...string) (*process, error) {
	return startProcessEnv(dir, name, bin, nil, args...)
}

// startProcessEnv is startProcess with the child's environment set to env (nil: this
// process's own).
func startProcessEnv(dir, name, bin string, env []string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, and how.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace.
func (p *process) stop(grace time.Duration) error {
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if already {
		<-p.done
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	return nil
}

// kill ends the process group at once, the way a machine losing power would.
func (p *process) kill() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tail returns the last n bytes of the process log, for error messages.
func (p *process) tail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, os.ErrClosed) && len(buf) == 0 {
		return ""
	}
	return string(buf)
}

// Process is a child process of the test started by StartProcess, the one way the harness
// runs a binary for as long as a test needs it (the control plane, the CSI sidecars, the
// agents of test/serverrunner).
type Process struct{ p *process }

// StartProcess runs bin with args as name, its output appended to dir/name.log and its
// environment env (nil: this process's own). The child is put in its own process group and
// gets SIGKILL if this process dies, so an interrupted test leaves nothing behind.
func StartProcess(dir, name, bin string, env []string, args ...string) (*Process, error) {
	p, err := startProcessEnv(dir, name, bin, env, args...)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// Pid is the process's id, which is also its process group's.
func (p *Process) Pid() int { return p.p.cmd.Process.Pid }

// LogPath is the file the process's output goes to.
func (p *Process) LogPath() string { return p.p.logPath }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.p.done }

// Err is how the process ended (exec.Cmd.Wait's error) once Done is closed, and nil before.
func (p *Process) Err() error {
	_, err := p.p.exited()
	return err
}

// Stop sends SIGTERM to the process group, then SIGKILL after grace, and waits for the
// process to exit. Stopping twice is fine.
func (p *Process) Stop(grace time.Duration) { _ = p.p.stop(grace) }

// Kill ends the process group at once, as a machine losing power would, and waits for the
// process to exit.
func (p *Process) Kill() { p.p.kill() }
