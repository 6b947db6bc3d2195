package cluster

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestWindowOutside(t *testing.T) {
	for _, tc := range []struct {
		rng            string
		lo, hi         int
		wantErrContain string
	}{
		{rng: "32768\t60999\n", lo: 10000, hi: 32768},
		{rng: "1024 65000", wantErrContain: "leaves no"},
		{rng: "1024 60000", lo: 60001, hi: 65536},
		{rng: "11000 60999", lo: 61000, hi: 65536},
		{rng: "12000 61000", lo: 10000, hi: 12000},
		{rng: "", wantErrContain: "want two numbers"},
		{rng: "60999 32768", wantErrContain: "ordered"},
		{rng: "a b", wantErrContain: "ordered"},
	} {
		t.Run(strings.TrimSpace(tc.rng), func(t *testing.T) {
			lo, hi, err := windowOutside(tc.rng)
			if tc.wantErrContain != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrContain) {
					t.Fatalf("windowOutside(%q) = %d, %d, %v; want an error containing %q", tc.rng, lo, hi, err, tc.wantErrContain)
				}
				return
			}
			if err != nil || lo != tc.lo || hi != tc.hi {
				t.Fatalf("windowOutside(%q) = %d, %d, %v; want %d, %d", tc.rng, lo, hi, err, tc.lo, tc.hi)
			}
		})
	}
}

func TestFreePortsReserved(t *testing.T) {
	lo, hi, err := portWindow("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip(err)
	}
	a, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(a, b...) {
		if seen[p] {
			t.Fatalf("port %d handed out twice: %v then %v", p, a, b)
		}
		seen[p] = true
		if p < lo || p >= hi {
			t.Errorf("port %d outside the window %d-%d", p, lo, hi)
		}
		// Another process would see the port as taken: a second open file description
		// conflicts with the held flock exactly as another process's would.
		f, err := lockPort(filepath.Join(os.TempDir(), "sharewarden-ports"), p)
		if err != nil {
			t.Fatal(err)
		}
		if f != nil {
			_ = f.Close()
			t.Errorf("port %d could be locked again while reserved", p)
		}
	}
	// A port something listens on is never handed out.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(reserved.next))
	if err != nil {
		t.Skipf("cannot listen on the next candidate: %v", err)
	}
	defer func() { _ = l.Close() }()
	busy := l.Addr().(*net.TCPAddr).Port
	c, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	if c[0] == busy {
		t.Fatalf("port %d handed out while bound", busy)
	}
}
