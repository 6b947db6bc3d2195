package nfsserver

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

const procIOSample = `rchar: 323934931
wchar: 323929600
syscr: 632687
syscw: 632675
read_bytes: 4096
write_bytes: 323932160
cancelled_write_bytes: 512
`

func TestParseProcIO(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     ProcIO
		err      string
	}{
		{name: "kernel sample", in: procIOSample, want: ProcIO{
			ReadChars: 323934931, WrittenChars: 323929600, ReadSyscalls: 632687, WriteSyscalls: 632675,
			ReadBytes: 4096, WrittenBytes: 323932160, CancelledWriteBytes: 512,
		}},
		{name: "unknown keys and blank lines ignored", in: "future: 7\n\n" + procIOSample, want: ProcIO{
			ReadChars: 323934931, WrittenChars: 323929600, ReadSyscalls: 632687, WriteSyscalls: 632675,
			ReadBytes: 4096, WrittenBytes: 323932160, CancelledWriteBytes: 512,
		}},
		{name: "max uint64", in: strings.Replace(procIOSample, "rchar: 323934931", "rchar: 18446744073709551615", 1), want: ProcIO{
			ReadChars: 18446744073709551615, WrittenChars: 323929600, ReadSyscalls: 632687, WriteSyscalls: 632675,
			ReadBytes: 4096, WrittenBytes: 323932160, CancelledWriteBytes: 512,
		}},
		{name: "empty", in: "", err: "no "},
		{name: "missing field", in: strings.Replace(procIOSample, "syscw: 632675\n", "", 1), err: "no syscw line"},
		{name: "duplicate", in: procIOSample + "rchar: 1\n", err: "rchar given twice"},
		{name: "not a number", in: strings.Replace(procIOSample, "4096", "4k", 1), err: "read_bytes"},
		{name: "negative", in: strings.Replace(procIOSample, "4096", "-1", 1), err: "read_bytes"},
		{name: "no colon", in: "rchar 1\n", err: `want "key: value"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcIO([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// hexAddr renders an address as the kernel does in /proc/net/tcp{,6}: each 32-bit word as
// held in memory, printed with %08X.
func hexAddr(ap netip.AddrPort) string {
	b := ap.Addr().AsSlice()
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%08X", binary.NativeEndian.Uint32(b[i:]))
	}
	fmt.Fprintf(&s, ":%04X", ap.Port())
	return s.String()
}

func tcpLine(sl int, local, remote string, st uint8) string {
	return fmt.Sprintf("  %d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n",
		sl, hexAddr(netip.MustParseAddrPort(local)), hexAddr(netip.MustParseAddrPort(remote)), st)
}

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
const tcp6Header = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

func TestParseProcNetTCP(t *testing.T) {
	// The kernel's own rendering of 127.0.0.1:2049 listening, on this machine's byte order.
	listen := "0100007F:0801"
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		listen = "7F000001:0801" // big-endian
	}
	in := tcpHeader +
		"   0: " + listen + " 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n" +
		tcpLine(1, "10.0.0.5:2049", "10.0.1.7:817", TCPStateEstablished)
	got, err := ParseProcNetTCP([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []TCPSocket{
		{Local: netip.MustParseAddrPort("127.0.0.1:2049"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: 0x0A},
		{Local: netip.MustParseAddrPort("10.0.0.5:2049"), Remote: netip.MustParseAddrPort("10.0.1.7:817"), State: TCPStateEstablished},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sockets %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("socket %d: got %+v, want %+v", i, got[i], want[i])
		}
	}

	six := tcp6Header + tcpLine(0, "[fd00::1]:2049", "[fd00::2]:700", TCPStateEstablished) +
		tcpLine(1, "[::ffff:10.0.0.5]:2049", "[::ffff:10.0.1.7]:701", TCPStateEstablished)
	got, err = ParseProcNetTCP([]byte(six))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Remote != netip.MustParseAddrPort("[fd00::2]:700") ||
		got[1].Remote != netip.MustParseAddrPort("10.0.1.7:701") || got[1].Local != netip.MustParseAddrPort("10.0.0.5:2049") {
		t.Errorf("tcp6: got %+v (an IPv4-mapped address must come back as IPv4)", got)
	}
}

func TestParseProcNetTCPRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ name, in, err string }{
		{"empty", "", "no header"},
		{"no header", tcpLine(0, "10.0.0.5:2049", "10.0.1.7:817", 1), "header"},
		{"short line", tcpHeader + "  0: 0100007F:0801\n", "at least 4 fields"},
		{"bad port", tcpHeader + "  0: 0100007F:08 00000000:0000 0A\n", "port"},
		{"bad address length", tcpHeader + "  0: 0100007F0:0801 00000000:0000 0A\n", "8 or 32"},
		{"not hex", tcpHeader + "  0: 0100007G:0801 00000000:0000 0A\n", "invalid byte"},
		{"no colon", tcpHeader + "  0: 0100007F 00000000:0000 0A\n", "ADDRESS:PORT"},
		{"bad state", tcpHeader + "  0: 0100007F:0801 00000000:0000 ZZ\n", "state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseProcNetTCP([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
		})
	}
}

func TestClients(t *testing.T) {
	s := func(local, remote string, st uint8) TCPSocket {
		return TCPSocket{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote), State: st}
	}
	for _, tc := range []struct {
		name           string
		socks          []TCPSocket
		clients, conns int
	}{
		{name: "none", clients: 0, conns: 0},
		{name: "listener only", socks: []TCPSocket{s("0.0.0.0:2049", "0.0.0.0:0", 0x0A)}},
		{name: "two nodes, one with nconnect", socks: []TCPSocket{
			s("10.0.0.5:2049", "10.0.1.7:817", 1), s("10.0.0.5:2049", "10.0.1.7:818", 1), s("10.0.0.5:2049", "10.0.1.8:900", 1),
		}, clients: 2, conns: 3},
		{name: "other ports and closing sockets do not count", socks: []TCPSocket{
			s("10.0.0.5:8081", "10.0.9.9:5000", 1), s("10.0.0.5:2049", "10.0.1.9:901", 0x06), s("10.0.0.5:2049", "10.0.1.7:817", 1),
			s("10.0.0.5:40000", "10.96.0.1:2049", 1),
		}, clients: 1, conns: 1},
		{name: "same node over both families", socks: []TCPSocket{s("10.0.0.5:2049", "10.0.1.7:817", 1), s("10.0.0.5:2049", "10.0.1.7:818", 1), s("[fd00::5]:2049", "[fd00::7]:700", 1)},
			clients: 2, conns: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clients, conns := Clients(tc.socks, 2049)
			if clients != tc.clients || conns != tc.conns {
				t.Errorf("got %d clients over %d connections, want %d over %d", clients, conns, tc.clients, tc.conns)
			}
		})
	}
}

func FuzzParseProcIO(f *testing.F) {
	f.Add([]byte(procIOSample))
	f.Add([]byte("rchar: 1\nrchar: 2\n"))
	f.Add([]byte(":\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		io, err := ParseProcIO(data)
		if err != nil && io != (ProcIO{}) {
			t.Fatalf("error %v with a non-zero result %+v", err, io)
		}
	})
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte(tcpHeader + tcpLine(0, "10.0.0.5:2049", "10.0.1.7:817", 1)))
	f.Add([]byte(tcp6Header + tcpLine(0, "[fd00::1]:2049", "[::ffff:1.2.3.4]:1", 1)))
	f.Add([]byte("sl\n 0: :: :: 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		socks, err := ParseProcNetTCP(data)
		if err != nil {
			if socks != nil {
				t.Fatalf("error %v with sockets %+v", err, socks)
			}
			return
		}
		clients, conns := Clients(socks, 2049)
		if clients > conns || conns > len(socks) {
			t.Fatalf("%d clients over %d connections out of %d sockets", clients, conns, len(socks))
		}
		for _, s := range socks {
			if !s.Local.IsValid() || !s.Remote.IsValid() || s.Local.Addr().Is4In6() || s.Remote.Addr().Is4In6() {
				t.Fatalf("socket %+v: invalid or still IPv4-mapped", s)
			}
		}
	})
}

func FuzzGraceEvent(f *testing.F) {
	f.Add([]byte("02/12/2026 03:00:00 : epoch 1 : host : ganesha.nfsd-1[main] nfs_start_grace :STATE :EVENT :NFS Server Now IN GRACE, duration 15\n"), 3)
	f.Add([]byte("... :STATE :EVENT :NFS Server Now NOT IN GRACE\n"), 1)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		// However the log is cut into writes, the watcher ends in the state of the last
		// marker line, and passes every byte through.
		var want, got, seen bool
		for _, line := range strings.SplitAfter(string(data), "\n") {
			if !strings.HasSuffix(line, "\n") || len(line) > maxLogLine {
				continue
			}
			if in, ok := GraceEvent([]byte(line)); ok {
				want, seen = in, true
			}
		}
		var out strings.Builder
		w := &graceWatcher{out: &out, set: func(in bool) { got = in }}
		if split <= 0 {
			split = 1
		}
		for rest := data; len(rest) > 0; {
			n := min(split, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if out.String() != string(data) {
			t.Fatal("output not passed through unchanged")
		}
		if seen && got != want {
			t.Fatalf("in grace %v, want %v", got, want)
		}
	})
}

func TestGraceWatcher(t *testing.T) {
	var states []bool
	var out strings.Builder
	w := &graceWatcher{out: &out, set: func(in bool) { states = append(states, in) }}
	log := "x : nfs_start_grace :STATE :EVENT :NFS Server Now IN GRACE, duration 15\n" +
		"x : nfs_rpc_dispatcher :DISP :EVENT :started\n" +
		"x : nfs_lift_grace_locked :STATE :EVENT :NFS Server Now NOT IN GRACE\n"
	// One byte at a time: lines cut across writes are still seen whole.
	for i := range len(log) {
		if _, err := w.Write([]byte{log[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != log {
		t.Errorf("output %q, want the log unchanged", out.String())
	}
	if len(states) != 2 || !states[0] || states[1] {
		t.Errorf("grace states %v, want [true false]", states)
	}
}

func TestLogsGrace(t *testing.T) {
	for _, tc := range []struct {
		log, level string
		want       bool
	}{
		{"STDOUT", "NIV_EVENT", true},
		{"STDERR", "NIV_FULL_DEBUG", true},
		{"STDOUT", "NIV_WARN", false},
		{"/var/log/ganesha.log", "NIV_EVENT", false},
		{"SYSLOG", "NIV_EVENT", false},
	} {
		o := Options{GaneshaLog: tc.log, GaneshaLogLevel: tc.level}
		if got := o.logsGrace(); got != tc.want {
			t.Errorf("log %s level %s: %v, want %v", tc.log, tc.level, got, tc.want)
		}
	}
}

// TestVolumeCollector reads a real filesystem (the test's temp dir) with statfs, and /proc
// files written into a fake proc root.
func TestVolumeCollector(t *testing.T) {
	dir := t.TempDir()
	proc := filepath.Join(dir, "proc")
	if err := os.MkdirAll(filepath.Join(proc, "4242"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(proc, "net"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proc, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("4242/io", procIOSample)
	write("net/tcp", tcpHeader+tcpLine(0, "10.0.0.5:2049", "10.0.1.7:817", 1)+tcpLine(1, "10.0.0.5:2049", "10.0.1.8:900", 1)+
		tcpLine(2, "10.0.0.5:8081", "10.0.1.9:5000", 1))
	write("net/tcp6", tcp6Header+tcpLine(0, "[::ffff:10.0.0.5]:2049", "[::ffff:10.0.1.7]:818", 1))

	var pid atomic.Int64
	pid.Store(4242)
	c := newVolumeCollector(dir, 2049, pid.Load)
	c.procRoot = proc
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)

	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no %s", name)
		return 0
	}
	if got, want := value("sharewarden_nfsserver_export_capacity_bytes"), float64(st.Blocks*uint64(st.Frsize)); got != want {
		t.Errorf("capacity %v, want %v", got, want)
	}
	if value("sharewarden_nfsserver_export_used_bytes")+value("sharewarden_nfsserver_export_available_bytes") > value("sharewarden_nfsserver_export_capacity_bytes") {
		t.Error("used + available exceed capacity")
	}
	if got := value("sharewarden_nfsserver_export_inodes"); got != float64(st.Files) {
		t.Errorf("inodes %v, want %v", got, st.Files)
	}
	for name, want := range map[string]float64{
		"sharewarden_nfsserver_ganesha_read_bytes_total":            323934931,
		"sharewarden_nfsserver_ganesha_written_bytes_total":         323929600,
		"sharewarden_nfsserver_ganesha_read_syscalls_total":         632687,
		"sharewarden_nfsserver_ganesha_write_syscalls_total":        632675,
		"sharewarden_nfsserver_ganesha_storage_read_bytes_total":    4096,
		"sharewarden_nfsserver_ganesha_storage_written_bytes_total": 323932160,
		"sharewarden_nfsserver_clients":                             2,
		"sharewarden_nfsserver_connections":                         3,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// A file growing on the export shows at the next scrape.
	before := value("sharewarden_nfsserver_export_inodes_used")
	f, err := os.Create(filepath.Join(dir, "new-file"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st.Files > 0 && value("sharewarden_nfsserver_export_inodes_used") < before {
		t.Error("inodes used went down after a file was created")
	}

	// Without ganesha there are no I/O series; an unreadable source is counted, not fatal.
	pid.Store(0)
	if err := os.Remove(filepath.Join(proc, "net", "tcp")); err != nil {
		t.Fatal(err)
	}
	write("net/tcp6", "garbage\n")
	if n := testutil.CollectAndCount(c, "sharewarden_nfsserver_ganesha_read_bytes_total"); n != 0 {
		t.Errorf("%d I/O series without ganesha, want none", n)
	}
	if got := testutil.ToFloat64(c.errors.WithLabelValues(sourceProcTCP)); got < 1 {
		t.Errorf("proc_net_tcp errors %v, want at least 1", got)
	}
	pid.Store(99999999)
	_ = testutil.CollectAndCount(c)
	if got := testutil.ToFloat64(c.errors.WithLabelValues(sourceProcIO)); got != 1 {
		t.Errorf("proc_io errors %v after a missing pid, want 1", got)
	}
}
