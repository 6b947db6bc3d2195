package nfsserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeGaneshaEnv makes the test binary act as ganesha.nfsd: "serve" writes its pid file and
// runs until SIGTERM (exit 0), "exit3" fails at once, "stubborn" ignores SIGTERM.
const fakeGaneshaEnv = "SHAREWARDEN_FAKE_GANESHA"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeGaneshaEnv); mode != "" {
		os.Exit(fakeGanesha(mode))
	}
	os.Exit(m.Run())
}

func fakeGanesha(mode string) int {
	fs := flag.NewFlagSet("ganesha.nfsd", flag.ContinueOnError)
	fs.Bool("F", false, "")
	fs.String("L", "", "")
	conf := fs.String("f", "", "")
	pid := fs.String("p", "", "")
	fs.String("N", "", "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if _, err := os.Stat(*conf); err != nil {
		fmt.Fprintln(os.Stderr, "fake ganesha: no config:", err)
		return 2
	}
	if mode == "exit3" {
		return 3
	}
	term := make(chan os.Signal, 1)
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	// Like ganesha, SIGHUP re-reads the config: the copy read goes to <config>.reloaded.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// The blkid cache ganesha was given, and whether it held anything at the start, go to
	// <config>.blkid.
	_, cached := os.Stat(os.Getenv("BLKID_FILE"))
	if os.WriteFile(*conf+".blkid", []byte(fmt.Sprintf("%s %t", os.Getenv("BLKID_FILE"), cached == nil)), 0o644) != nil {
		return 2
	}
	if err := os.WriteFile(*pid, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return 2
	}
	for {
		select {
		case <-term:
			return 0
		case <-hup:
			b, err := os.ReadFile(*conf)
			if err != nil || os.WriteFile(*conf+".reloaded", b, 0o644) != nil {
				return 5
			}
		case <-time.After(time.Minute):
			return 4
		}
	}
}

// testAgent returns an agent over temp dirs with the test binary as ganesha in the given mode.
func testAgent(t *testing.T, mode string, gate Gate) (*Agent, Options) {
	t.Helper()
	t.Setenv(fakeGaneshaEnv, mode)
	dir := t.TempDir()
	o := validOptions()
	o.VolumeDir = filepath.Join(dir, "vol")
	o.RuntimeDir = filepath.Join(dir, "run")
	o.GaneshaBinary = os.Args[0]
	o.ClaimNamespace, o.ClaimName = "team-a", "data"
	o.NFSAddress = "127.0.0.1:" + freePort(t)
	o.HTTPAddress = "127.0.0.1:0"
	o.StopTimeout = 10 * time.Second
	if err := os.Mkdir(o.VolumeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := New(o, gate)
	if err != nil {
		t.Fatal(err)
	}
	a.Stdout, a.Stderr = io.Discard, io.Discard
	a.probe = func(context.Context) error { return nil }
	return a, o
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// runAgent runs a in the background and returns its result channel.
func runAgent(ctx context.Context, a *Agent) <-chan error {
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return done
}

// waitFor polls cond every 10ms until it holds or 10s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not return within 10s")
		return nil
	}
}

func TestRunStopsGaneshaOnCancel(t *testing.T) {
	a, o := testAgent(t, "serve", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAgent(ctx, a)
	waitFor(t, "ganesha's pid file", func() bool { _, err := os.Stat(o.PIDPath()); return err == nil })
	if !a.running.Load() {
		t.Fatal("agent does not report ganesha running after it wrote its pid file")
	}
	for _, dir := range []string{o.DataDir(), filepath.Join(o.VolumeDir, StateSubdir)} {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			t.Errorf("%s not created: %v", dir, err)
		}
	}
	if st, err := os.Stat(o.DataDir()); err == nil && st.Mode().Perm() != 0o777 {
		t.Errorf("export dir mode = %v, want 0777", st.Mode().Perm())
	}
	conf, err := os.ReadFile(o.ConfigPath())
	if err != nil || string(conf) != RenderConfig(o, nil) {
		t.Fatalf("config on disk is not RenderConfig(opts): %v", err)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run after cancel = %v, want nil (ganesha stopped on SIGTERM)", err)
	}
	if a.running.Load() {
		t.Fatal("agent still reports ganesha running after Run returned")
	}
}

// TestGaneshaBlkidCache: ganesha reads the backing filesystem's UUID through a blkid cache of its
// own, emptied before it starts, not the node's (or whatever BLKID_FILE the agent was given),
// which may describe the disk that last had the device's name.
func TestGaneshaBlkidCache(t *testing.T) {
	nodeCache := filepath.Join(t.TempDir(), "blkid.tab")
	t.Setenv("BLKID_FILE", nodeCache)
	a, o := testAgent(t, "serve", nil)
	if err := os.MkdirAll(o.RuntimeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{nodeCache, o.BlkidCachePath()} {
		if err := os.WriteFile(f, []byte(`<device DEVNO="0x0700" TIME="1796192716.3" UUID="c8549e41-5812-4db4-8a35-91e1e2054525" TYPE="ext4">/dev/loop0</device>`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runAgent(ctx, a)
	waitFor(t, "ganesha's pid file", func() bool { _, err := os.Stat(o.PIDPath()); return err == nil })
	got, err := os.ReadFile(o.ConfigPath() + ".blkid")
	if want := o.BlkidCachePath() + " false"; err != nil || string(got) != want {
		t.Errorf("ganesha's BLKID_FILE and whether it existed = %q, %v; want %q", got, err, want)
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestGaneshaEnv(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env, want []string
	}{
		{"added", []string{"PATH=/bin", "HOME=/"}, []string{"PATH=/bin", "HOME=/", "BLKID_FILE=/run/sw/blkid.tab"}},
		{"replaced", []string{"BLKID_FILE=/run/blkid/blkid.tab", "PATH=/bin"}, []string{"PATH=/bin", "BLKID_FILE=/run/sw/blkid.tab"}},
		{"empty", nil, []string{"BLKID_FILE=/run/sw/blkid.tab"}},
		{"prefix only", []string{"BLKID_FILEX=1"}, []string{"BLKID_FILEX=1", "BLKID_FILE=/run/sw/blkid.tab"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ganeshaEnv(tc.env, "/run/sw/blkid.tab"); !slices.Equal(got, tc.want) {
				t.Fatalf("ganeshaEnv(%q) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
}

func TestRunFailsWhenGaneshaExits(t *testing.T) {
	a, _ := testAgent(t, "exit3", nil)
	err := result(t, runAgent(context.Background(), a))
	if err == nil || !strings.Contains(err.Error(), "ganesha exited unexpectedly: exit status 3") {
		t.Fatalf("Run = %v, want ganesha's exit status 3", err)
	}
}

func TestRunKillsGaneshaIgnoringSIGTERM(t *testing.T) {
	a, o := testAgent(t, "stubborn", nil)
	a.opts.StopTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := runAgent(ctx, a)
	waitFor(t, "ganesha's pid file", func() bool { _, err := os.Stat(o.PIDPath()); return err == nil })
	cancel()
	err := result(t, done)
	if err == nil || !strings.Contains(err.Error(), "did not stop within 200ms") || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Run = %v, want a kill after the stop timeout", err)
	}
}

func TestGate(t *testing.T) {
	open := make(chan struct{})
	errLeaseLost := errors.New("lease lost")
	revokes := make(chan context.CancelCauseFunc, 1)
	pidAtGate := make(chan error, 1)
	var pidPath string
	gate := func(ctx context.Context) (context.Context, error) {
		_, err := os.Stat(pidPath)
		pidAtGate <- err
		select {
		case <-open:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		serving, revoke := context.WithCancelCause(ctx)
		revokes <- revoke
		return serving, nil
	}
	a, o := testAgent(t, "stubborn", gate) // stubborn: only SIGKILL can end it
	// A stale pid file from an earlier ganesha is gone before the gate is even asked.
	pidPath = o.PIDPath()
	if err := os.MkdirAll(o.RuntimeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, pidPath)
	done := runAgent(context.Background(), a)
	if err := <-pidAtGate; !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pid file when the gate was asked: %v, want it removed", err)
	}

	// Until the gate opens, ganesha must not run and the agent is not healthy.
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(o.PIDPath()); err == nil {
		t.Fatal("ganesha started before the gate opened")
	}
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/healthz before the gate opened = %d, want 503", rec.Code)
	}

	close(open)
	waitFor(t, "ganesha's pid file", func() bool { _, err := os.Stat(o.PIDPath()); return err == nil })
	(<-revokes)(errLeaseLost)
	err := result(t, done)
	if !errors.Is(err, errLeaseLost) {
		t.Fatalf("Run after the gate closed = %v, want it to wrap %v", err, errLeaseLost)
	}
}

func TestHealthz(t *testing.T) {
	a, o := testAgent(t, "serve", nil)
	probeErr := errors.New("connection refused")
	tests := []struct {
		name     string
		running  bool
		probe    error
		wantCode int
		wantBody string
		wantUp   string
	}{
		{name: "ganesha answers", running: true, wantCode: 200, wantBody: "ok", wantUp: "1"},
		{name: "ganesha does not answer", running: true, probe: probeErr, wantCode: 503, wantBody: "connection refused", wantUp: "0"},
		{name: "ganesha not running", running: false, wantCode: 503, wantBody: "not running", wantUp: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.running.Store(tt.running)
			a.probe = func(context.Context) error { return tt.probe }
			rec := httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Fatalf("/healthz = %d %q, want %d containing %q", rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
			rec = httptest.NewRecorder()
			a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			// Every per-volume series names the volume and its claim.
			want := `sharewarden_nfsserver_ganesha_up{claim_name="data",claim_namespace="team-a",volume="` + o.VolumeID + `"} ` + tt.wantUp + "\n"
			if !strings.Contains(rec.Body.String(), want) {
				t.Fatalf("/metrics lacks %q:\n%s", want, rec.Body)
			}
		})
	}
}

func TestPreflight(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name   string
		mutate func(t *testing.T, o *Options)
		want   string
	}{
		{name: "missing ganesha binary", mutate: func(_ *testing.T, o *Options) { o.GaneshaBinary = "/nonexistent/ganesha.nfsd" },
			want: "ganesha binary not found"},
		{name: "ganesha binary not in PATH", mutate: func(_ *testing.T, o *Options) { o.GaneshaBinary = "no-such-ganesha.nfsd" },
			want: "ganesha binary not found"},
		{name: "volume not mounted", mutate: func(_ *testing.T, o *Options) { o.VolumeDir += "-missing" },
			want: "is the backing volume mounted?"},
		{name: "volume is a file", mutate: func(t *testing.T, o *Options) {
			o.VolumeDir = filepath.Join(t.TempDir(), "file")
			writeFile(t, o.VolumeDir)
		}, want: "is not a directory"},
		{name: "export dir is a file", mutate: func(t *testing.T, o *Options) { writeFile(t, o.DataDir()) },
			want: "export dir is not usable"},
		{name: "state dir is a file", mutate: func(t *testing.T, o *Options) { writeFile(t, filepath.Join(o.VolumeDir, StateSubdir)) },
			want: "state dir is not usable"},
		{name: "runtime dir is a file", mutate: func(t *testing.T, o *Options) {
			o.RuntimeDir = filepath.Join(t.TempDir(), "file")
			writeFile(t, o.RuntimeDir)
		}, want: "runtime dir"},
		{name: "NFS port in use", mutate: func(_ *testing.T, o *Options) { o.NFSAddress = busy.Addr().String() },
			want: "NFS address " + busy.Addr().String() + " is not available"},
		{name: "HTTP port in use", mutate: func(_ *testing.T, o *Options) { o.HTTPAddress = busy.Addr().String() },
			want: "HTTP address " + busy.Addr().String() + " is not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, o := testAgent(t, "serve", nil)
			tt.mutate(t, &o)
			a.opts = o
			err := result(t, runAgent(context.Background(), a))
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Run = %v, want one line containing %q", err, tt.want)
			}
			if _, statErr := os.Stat(o.PIDPath()); statErr == nil {
				t.Fatal("ganesha was started despite bad configuration")
			}
		})
	}
}

func writeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestProbeNFSAgainstSilentServer(t *testing.T) {
	// A server that accepts connections but never answers, as a frozen ganesha does.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	err = ProbeNFS(context.Background(), ln.Addr().String(), 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no RPC NULL reply") {
		t.Fatalf("ProbeNFS = %v, want a timeout", err)
	}
}

func TestProbeNFSAgainstWrongProgram(t *testing.T) {
	// A server answering PROG_UNAVAIL, as a non-NFS RPC service would.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var call [44]byte
		if _, err := io.ReadFull(c, call[:]); err != nil {
			return
		}
		reply := append([]byte{0x80, 0, 0, 24}, call[4:8]...) // marker, xid
		reply = append(reply, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
		_, _ = c.Write(reply)
	}()
	err = ProbeNFS(context.Background(), ln.Addr().String(), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "PROG_UNAVAIL") {
		t.Fatalf("ProbeNFS = %v, want PROG_UNAVAIL", err)
	}
}

// TestAllowlistReload: with the allowlist on, ganesha starts with the clients known at start
// (none: nobody admitted), and each change is written into the config and read by ganesha
// through SIGHUP while it keeps running.
func TestAllowlistReload(t *testing.T) {
	a, o := testAgent(t, "serve", nil)
	a.opts.ClientAllowlist = true
	o.ClientAllowlist = true
	a.SetAllowedClients(nil) // read before ganesha starts: no consumer yet
	ctx, cancel := context.WithCancel(context.Background())
	done := runAgent(ctx, a)
	waitFor(t, "ganesha's pid file", func() bool { _, err := os.Stat(o.PIDPath()); return err == nil })
	conf, err := os.ReadFile(o.ConfigPath())
	if err != nil || string(conf) != RenderConfig(o, nil) {
		t.Fatalf("config at start is not the one admitting nobody: %v\n%s", err, conf)
	}
	pid := a.proc.Load().Pid
	for _, step := range [][]netip.Addr{
		{netip.MustParseAddr("10.0.0.1")},
		{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::2")},
		nil,
	} {
		a.SetAllowedClients(step)
		want := RenderConfig(o, step)
		waitFor(t, fmt.Sprintf("ganesha reloading the config for %v", step), func() bool {
			got, err := os.ReadFile(o.ConfigPath() + ".reloaded")
			return err == nil && string(got) == want
		})
	}
	if got := a.proc.Load(); got == nil || got.Pid != pid {
		t.Fatal("ganesha was restarted; a reload must keep it running")
	}
	cancel()
	if err := result(t, done); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}
