// Package nfsserver_test is the real data-plane test of the NFS server agent: the sharewarden
// binary runs `nfs-server` as its own process, with real nfs-ganesha on a loopback address over
// a temp directory standing in for the backing volume, and libnfs's userspace NFSv4 client
// (nfs-cp, nfs-ls, nfs-cat) writes, lists and reads through it.
//
// libnfs 4.0 (Debian bookworm) speaks NFSv4.0 only, so the agents here serve minor versions
// 0, 1 and 2; one test checks that the default (4.1 and 4.2 only) refuses it.
//
// Needs nfs-ganesha, nfs-ganesha-vfs and libnfs-utils (hack/install-nfs.sh) and root. Without
// them the suite skips with one line, unless SHAREWARDEN_REQUIRE_E2E is set: then it fails.
package nfsserver_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// Timeouts for things that happen in well under a second on an idle machine.
const (
	startTimeout = 60 * time.Second
	// readTimeout covers the default 15 s grace period, during which a restarted server refuses
	// new opens until its previous clients have reclaimed or the period ends.
	readTimeout = 90 * time.Second
	exitTimeout = 30 * time.Second
)

const volumeID = "0f8a7c1e-e2e0-4000-8000-000000000001"

// binary is the sharewarden binary, built by TestMain.
var binary string

func TestMain(m *testing.M) {
	fixture.RunSuite(m, fixture.Suite{
		Name:  "nfsserver",
		Tools: []string{"ganesha.nfsd", "nfs-cp", "nfs-ls", "nfs-cat"},
		Root:  true,
		Build: true,
		Setup: func(_ context.Context, e *fixture.Env) error { binary = e.Binary; return nil },
	})
}

// agent is one `sharewarden nfs-server` process.
type agent struct {
	t                     testing.TB
	host                  string // NFS IP
	nfsPort               int
	httpAddr              string
	volumeDir, runtimeDir string
	ganeshaLog, output    string
	cmd                   *exec.Cmd
	exited                chan struct{}
	err                   error // cmd.Wait's, once exited is closed
}

type agentConfig struct {
	host      string
	nfsPort   int // 0 picks a free one
	volumeDir string
	extra     []string
}

// startAgent runs an agent and stops it (SIGTERM) when the test ends.
func startAgent(t testing.TB, c agentConfig) *agent {
	t.Helper()
	dir := t.TempDir()
	a := &agent{
		t: t, host: c.host, nfsPort: c.nfsPort, volumeDir: c.volumeDir,
		httpAddr:   "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1")),
		runtimeDir: filepath.Join(dir, "run"), ganeshaLog: filepath.Join(dir, "ganesha.log"),
		output: filepath.Join(dir, "agent.log"), exited: make(chan struct{}),
	}
	if a.nfsPort == 0 {
		a.nfsPort = freePort(t, c.host)
	}
	args := append([]string{"nfs-server",
		"--volume-id=" + volumeID,
		"--volume-dir=" + a.volumeDir,
		"--runtime-dir=" + a.runtimeDir,
		"--nfs-address=" + net.JoinHostPort(a.host, strconv.Itoa(a.nfsPort)),
		"--http-address=" + a.httpAddr,
		"--ganesha-log=" + a.ganeshaLog,
		"--probe-timeout=1s",
		"--self-fence=false", // no apiserver here: the data path alone is under test
	}, c.extra...)
	out, err := os.Create(a.output)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd = exec.Command(binary, args...)
	a.cmd.Stdout, a.cmd.Stderr = out, out
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		a.err = a.cmd.Wait()
		out.Close()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.signal(syscall.SIGTERM)
		select {
		case <-a.exited:
		case <-time.After(exitTimeout):
			a.signal(syscall.SIGKILL)
			<-a.exited
		}
		if t.Failed() {
			a.dump()
		}
	})
	return a
}

func (a *agent) signal(sig syscall.Signal) {
	select {
	case <-a.exited:
	default:
		_ = a.cmd.Process.Signal(sig)
	}
}

// dump logs the agent's and ganesha's output for a failed test.
func (a *agent) dump() {
	for _, f := range []string{a.output, a.ganeshaLog} {
		b, _ := os.ReadFile(f)
		a.t.Logf("--- %s:\n%s", f, b)
	}
}

// healthz returns /healthz's status code, or 0 if the agent does not answer HTTP.
func (a *agent) healthz() int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + a.httpAddr + "/healthz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (a *agent) metrics() string {
	a.t.Helper()
	resp, err := http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		a.t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return string(b)
}

// metric returns the value of the series of name whose labels include match ("" for any), or
// -1 when there is none.
func (a *agent) metric(name, match string) float64 {
	a.t.Helper()
	for _, line := range strings.Split(a.metrics(), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != '{' && rest[0] != ' ') || !strings.Contains(rest, match) {
			continue
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			a.t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	return -1
}

// waitHealthz waits until /healthz answers code.
func (a *agent) waitHealthz(code int) {
	a.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		got := a.healthz()
		if got == code {
			return
		}
		select {
		case <-a.exited:
			a.t.Fatalf("agent exited (%v) while waiting for /healthz %d", a.err, code)
		default:
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("/healthz = %d after %s, want %d", got, startTimeout, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitExit waits for the agent to exit and returns its exit code and last output line.
func (a *agent) waitExit() (int, string) {
	a.t.Helper()
	select {
	case <-a.exited:
	case <-time.After(exitTimeout):
		a.t.Fatalf("agent still running %s later", exitTimeout)
	}
	b, err := os.ReadFile(a.output)
	if err != nil {
		a.t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return a.cmd.ProcessState.ExitCode(), lines[len(lines)-1]
}

// ganeshaPID reads ganesha's pid from its pid file.
func (a *agent) ganeshaPID() int {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.runtimeDir, "ganesha.pid"))
	if err != nil {
		a.t.Fatalf("ganesha pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		a.t.Fatalf("ganesha pid file: %v", err)
	}
	return pid
}

func (a *agent) url(path string) string {
	return fmt.Sprintf("nfs://%s%s?version=4&nfsport=%d", a.host, path, a.nfsPort)
}

// nfs runs a libnfs tool and returns its combined output.
func nfs(tool string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	return string(out), err
}

// put copies content to path on the export through NFS.
func (a *agent) put(path, content string) {
	a.t.Helper()
	src := filepath.Join(a.t.TempDir(), "src")
	if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
		a.t.Fatal(err)
	}
	if out, err := nfs("nfs-cp", src, a.url(path)); err != nil {
		a.t.Fatalf("nfs-cp to %s: %v\n%s", path, err, out)
	}
}

// cat reads path through NFS, retrying while the server is in its grace period.
func (a *agent) cat(path string) string {
	a.t.Helper()
	deadline := time.Now().Add(readTimeout)
	for {
		out, err := nfs("nfs-cat", a.url(path))
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("nfs-cat %s: %v\n%s", path, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// ls lists a directory through NFS and returns the entry names, sorted.
func (a *agent) ls(path string) []string {
	a.t.Helper()
	out, err := nfs("nfs-ls", a.url(path))
	if err != nil {
		a.t.Fatalf("nfs-ls %s: %v\n%s", path, err, out)
	}
	var names []string
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[len(f)-1])
		}
	}
	slices.Sort(names)
	return names
}

func freePort(t testing.TB, host string) int {
	t.Helper()
	ports, err := cluster.FreePortsOn(host, 1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

func newVolume(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "volume")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func processAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

var clidCount = regexp.MustCompile(`clid count\((\d+)\)`)

// recoveredClients returns how many client records ganesha loaded from the recovery directory
// when it started, from its "check grace" log line.
func (a *agent) recoveredClients() int {
	a.t.Helper()
	f, err := os.Open(a.ganeshaLog)
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := clidCount.FindStringSubmatch(s.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	a.t.Fatalf("no 'clid count' line in %s", a.ganeshaLog)
	return 0
}

// TestDataPlane runs every case, side by side, each on its own volume, addresses and ports.
func TestDataPlane(t *testing.T) {
	runParallel(t,
		subtest{"serve, kill, restart", testServeKillRestart},
		subtest{"agent death kills ganesha", testAgentDeathKillsGanesha},
		subtest{"default serves NFSv4.1+ only", testDefaultServesNFSv41Only},
		subtest{"side by side", testSideBySide},
		subtest{"bad configuration", testBadConfiguration},
		subtest{"per-volume metrics", testVolumeMetrics},
	)
}

// subtest is a named case of a test that runParallel runs.
type subtest struct {
	name string
	run  func(*testing.T)
}

// runParallel runs every case side by side, as parallel subtests of t.
func runParallel(t *testing.T, cases ...subtest) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t)
		})
	}
}

// testServeKillRestart is the data plane's life: serve, lose ganesha, come back with the data.
func testServeKillRestart(t *testing.T) {
	vol := newVolume(t)
	cfg := agentConfig{host: "127.0.0.2", volumeDir: vol, extra: []string{"--nfs-minor-versions=0,1,2"}}
	a := startAgent(t, cfg)
	a.waitHealthz(http.StatusOK)

	// Write, list and read through NFS. libnfs 4.0 sends a whole write in one NFSv4 WRITE and
	// fails client-side once that passes about 2 KiB, so the files written through it stay
	// small; a large binary file put on the volume directly is read back through NFS instead.
	files := map[string]string{
		"/export/hello.txt":  "hello from sharewarden\n",
		"/export/second.txt": strings.Repeat("0123456789abcdef", 100),
	}
	for p, c := range files {
		a.put(p, c)
	}
	big := make([]byte, 300<<10)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "data", "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	files["/export/big.bin"] = string(big)
	wantNames := []string{"big.bin", "hello.txt", "second.txt"}
	if got := a.ls("/export"); !slices.Equal(got, wantNames) {
		t.Fatalf("nfs-ls /export = %q, want %q (the agent's state must stay hidden)", got, wantNames)
	}
	for p, c := range files {
		if got := a.cat(p); got != c {
			t.Fatalf("nfs-cat %s = %d bytes, want %d", p, len(got), len(c))
		}
	}
	// The data is in the volume's export dir, the NFSv4 client records beside it on the volume.
	if b, err := os.ReadFile(filepath.Join(vol, "data", "hello.txt")); err != nil || string(b) != files["/export/hello.txt"] {
		t.Fatalf("hello.txt on the volume = %q, %v", b, err)
	}
	records, err := os.ReadDir(filepath.Join(vol, ".sharewarden", "ganesha-recovery", "v4recov"))
	if err != nil || len(records) == 0 {
		t.Fatalf("no NFSv4 client records on the volume: %d, %v", len(records), err)
	}
	if a.metric("sharewarden_nfsserver_ganesha_running", "") != 1 || a.metric("sharewarden_nfsserver_ganesha_starts_total", "") != 1 ||
		a.metric("sharewarden_nfsserver_probe_duration_seconds_count", `result="ok"`) < 1 {
		t.Fatalf("/metrics: ganesha not running, started once and probed:\n%s", a.metrics())
	}

	// A frozen ganesha still accepts TCP connections but answers no RPC: unhealthy.
	pid := a.ganeshaPID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	a.waitHealthz(http.StatusServiceUnavailable)
	// A dead ganesha ends the agent, with an error.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code, last := a.waitExit()
	if code == 0 || last != "sharewarden: ganesha exited unexpectedly: killed by signal killed" {
		t.Fatalf("agent exit = %d, last line %q; want non-zero and why", code, last)
	}
	if a.healthz() != 0 {
		t.Fatal("the agent's HTTP server outlived it")
	}

	// A new agent on the same volume serves the same data, and ganesha found the clients'
	// records on the volume (they may reclaim during its grace period).
	b := startAgent(t, cfg)
	b.waitHealthz(http.StatusOK)
	if n := b.recoveredClients(); n < 1 {
		t.Fatalf("restarted ganesha loaded %d client records from the volume, want at least 1", n)
	}
	for p, c := range files {
		if got := b.cat(p); got != c {
			t.Fatalf("after restart nfs-cat %s = %d bytes, want %d", p, len(got), len(c))
		}
	}
	if got := b.ls("/export"); !slices.Equal(got, wantNames) {
		t.Fatalf("after restart nfs-ls /export = %q, want %q", got, wantNames)
	}

	// SIGTERM is a clean stop: ganesha gets it too, and the agent exits 0.
	gpid := b.ganeshaPID()
	b.signal(syscall.SIGTERM)
	if code, last := b.waitExit(); code != 0 {
		t.Fatalf("agent exit after SIGTERM = %d (%q), want 0", code, last)
	}
	if processAlive(gpid) {
		t.Fatalf("ganesha (pid %d) outlived its agent's clean stop", gpid)
	}
}

// testAgentDeathKillsGanesha: ganesha must never serve without its agent (which will hold the
// volume's lease), even when the agent is SIGKILLed and cannot clean up.
func testAgentDeathKillsGanesha(t *testing.T) {
	a := startAgent(t, agentConfig{host: "127.0.0.2", volumeDir: newVolume(t)})
	a.waitHealthz(http.StatusOK)
	killAgent(t, a)
}

// testDefaultServesNFSv41Only: with the default minor versions a NFSv4.0 client is refused.
func testDefaultServesNFSv41Only(t *testing.T) {
	a := startAgent(t, agentConfig{host: "127.0.0.3", volumeDir: newVolume(t)})
	a.waitHealthz(http.StatusOK)
	out, err := nfs("nfs-ls", a.url("/export"))
	if err == nil || !strings.Contains(out, "NFS4ERR_MINOR_VERS_MISMATCH") {
		t.Fatalf("NFSv4.0 nfs-ls against a 4.1+ server: err %v, output %q; want NFS4ERR_MINOR_VERS_MISMATCH", err, out)
	}
}

// testSideBySide: two agents on one port of two loopback addresses serve their own volumes.
func testSideBySide(t *testing.T) {
	port := freePort(t, "127.0.0.2")
	if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.3", strconv.Itoa(port))); err != nil {
		t.Skipf("port %d is taken on 127.0.0.3: %v", port, err)
	} else {
		ln.Close()
	}
	extra := []string{"--nfs-minor-versions=0,1,2"}
	a := startAgent(t, agentConfig{host: "127.0.0.2", nfsPort: port, volumeDir: newVolume(t), extra: extra})
	b := startAgent(t, agentConfig{host: "127.0.0.3", nfsPort: port, volumeDir: newVolume(t), extra: extra})
	a.waitHealthz(http.StatusOK)
	b.waitHealthz(http.StatusOK)
	a.put("/export/a.txt", "on 127.0.0.2")
	b.put("/export/b.txt", "on 127.0.0.3")
	if got := a.ls("/export"); !slices.Equal(got, []string{"a.txt"}) {
		t.Fatalf("127.0.0.2 lists %q, want only a.txt", got)
	}
	if got := b.ls("/export"); !slices.Equal(got, []string{"b.txt"}) {
		t.Fatalf("127.0.0.3 lists %q, want only b.txt", got)
	}
	if got := b.cat("/export/b.txt"); got != "on 127.0.0.3" {
		t.Fatalf("127.0.0.3 serves b.txt = %q", got)
	}
}

// testBadConfiguration: each mistake ends the agent at once with one clear line and exit 1.
func testBadConfiguration(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name  string
		cfg   func(vol string) agentConfig
		want  string
		setup func(t *testing.T, vol string)
	}{
		{
			name: "NFS port in use",
			cfg:  func(vol string) agentConfig { return agentConfig{host: "127.0.0.2", nfsPort: busyPort, volumeDir: vol} },
			want: fmt.Sprintf("sharewarden: NFS address 127.0.0.2:%d is not available: listen tcp 127.0.0.2:%d: bind: address already in use", busyPort, busyPort),
		},
		{
			name: "missing ganesha binary",
			cfg: func(vol string) agentConfig {
				return agentConfig{host: "127.0.0.2", volumeDir: vol, extra: []string{"--ganesha-binary=/opt/none/ganesha.nfsd"}}
			},
			want: `sharewarden: ganesha binary not found: exec: "/opt/none/ganesha.nfsd": stat /opt/none/ganesha.nfsd: no such file or directory`,
		},
		{
			name: "backing volume not mounted",
			cfg:  func(vol string) agentConfig { return agentConfig{host: "127.0.0.2", volumeDir: vol + "/missing"} },
			want: "is not usable (is the backing volume mounted?)",
		},
		{
			name: "export dir not writable",
			cfg:  func(vol string) agentConfig { return agentConfig{host: "127.0.0.2", volumeDir: vol} },
			setup: func(t *testing.T, vol string) {
				if err := os.WriteFile(filepath.Join(vol, "data"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want: "sharewarden: export dir is not usable: mkdir",
		},
		{
			name: "invalid flags",
			cfg: func(vol string) agentConfig {
				return agentConfig{host: "127.0.0.2", volumeDir: vol, extra: []string{"--squash=root", "--grace=5s"}}
			},
			want: `sharewarden: invalid options: [squash: Unsupported value: "root"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vol := newVolume(t)
			if tt.setup != nil {
				tt.setup(t, vol)
			}
			a := startAgent(t, tt.cfg(vol))
			code, last := a.waitExit()
			if code != 1 || !strings.Contains(last, tt.want) {
				t.Fatalf("agent exit %d, last line %q; want 1 and a line containing %q", code, last, tt.want)
			}
			out, _ := os.ReadFile(a.output)
			if n := bytes.Count(out, []byte("sharewarden:")); n != 1 {
				t.Fatalf("%d error lines, want one:\n%s", n, out)
			}
			if _, err := os.Stat(filepath.Join(a.runtimeDir, "ganesha.pid")); err == nil {
				t.Fatal("ganesha was started despite the bad configuration")
			}
		})
	}
}

// testVolumeMetrics: the agent's per-volume metrics over real ganesha: labelled with the volume
// and its claim, the export's real statfs figures, ganesha's file I/O through NFS, one client
// per source address connected to the NFS port, and the grace period read from ganesha's log.
func testVolumeMetrics(t *testing.T) {
	vol := newVolume(t)
	a := startAgent(t, agentConfig{host: "127.0.0.5", volumeDir: vol, extra: []string{"--nfs-minor-versions=0,1,2",
		"--claim-namespace=team-a", "--claim-name=data",
		// ganesha logs to the agent, which reads its grace messages there.
		"--ganesha-log=STDOUT",
		// No background probes: the only connections to the NFS port are the test's.
		"--probe-interval=1h"}})
	a.waitHealthz(http.StatusOK)
	labels := `claim_name="data",claim_namespace="team-a",volume="` + volumeID + `"`
	if a.metric("sharewarden_nfsserver_ganesha_up", labels) != 1 {
		t.Fatalf("no ganesha_up 1 labelled %s:\n%s", labels, a.metrics())
	}

	// ganesha says when its grace period ends (at once here: no client has state to reclaim).
	deadline := time.Now().Add(readTimeout)
	for a.metric("sharewarden_nfsserver_ganesha_in_grace", labels) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still in grace after %s (the agent log, with ganesha's, follows)", readTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}

	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Join(vol, "data"), &st); err != nil {
		t.Fatal(err)
	}
	if got, want := a.metric("sharewarden_nfsserver_export_capacity_bytes", labels), float64(st.Blocks*uint64(st.Frsize)); got != want {
		t.Errorf("capacity %v, want statfs's %v", got, want)
	}
	if got := a.metric("sharewarden_nfsserver_export_inodes", labels); got != float64(st.Files) {
		t.Errorf("inodes %v, want statfs's %v", got, st.Files)
	}

	// A file written and read back through NFS passes through ganesha's write and read syscalls.
	content := strings.Repeat("0123456789abcdef", 100)
	written := a.metric("sharewarden_nfsserver_ganesha_written_bytes_total", labels)
	writes := a.metric("sharewarden_nfsserver_ganesha_write_syscalls_total", labels)
	if written < 0 || writes < 0 {
		t.Fatalf("no I/O series (is /proc/<ganesha>/io readable?):\n%s", a.metrics())
	}
	a.put("/export/metrics.txt", content)
	if got := a.metric("sharewarden_nfsserver_ganesha_written_bytes_total", labels); got-written < float64(len(content)) {
		t.Errorf("written bytes grew by %v after writing %d bytes through NFS", got-written, len(content))
	}
	if got := a.metric("sharewarden_nfsserver_ganesha_write_syscalls_total", labels); got <= writes {
		t.Errorf("write syscalls %v, not more than %v before the write", got, writes)
	}
	read := a.metric("sharewarden_nfsserver_ganesha_read_bytes_total", labels)
	if got := a.cat("/export/metrics.txt"); got != content {
		t.Fatalf("read back %d bytes, want %d", len(got), len(content))
	}
	if got := a.metric("sharewarden_nfsserver_ganesha_read_bytes_total", labels); got-read < float64(len(content)) {
		t.Errorf("read bytes grew by %v after reading %d bytes through NFS", got-read, len(content))
	}

	// Clients: distinct source addresses with a connection open to the NFS port; two from one
	// address are one client (one node, nconnect).
	if got := a.metric("sharewarden_nfsserver_clients", labels); got != 0 {
		t.Errorf("%v clients before any connection", got)
	}
	for _, src := range []string{"127.0.0.6", "127.0.0.7", "127.0.0.7"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", net.JoinHostPort(a.host, strconv.Itoa(a.nfsPort)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if got := a.metric("sharewarden_nfsserver_clients", labels); got != 2 {
		t.Errorf("%v clients with connections from two addresses, want 2", got)
	}
	if got := a.metric("sharewarden_nfsserver_connections", labels); got != 3 {
		t.Errorf("%v connections, want 3", got)
	}
	if got := a.metric("sharewarden_nfsserver_collect_errors_total", `source="proc_io"`); got != 0 {
		t.Errorf("%v proc_io collect errors", got)
	}
}
