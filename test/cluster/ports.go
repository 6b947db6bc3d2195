package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports handed to the processes a test starts are chosen in two steps, because "listen on port
// 0, close, pass the number on" races twice: the kernel hands the same number to the next
// listen(0) in another test binary, and the port lies in the ephemeral range, so any outgoing
// connection (a client to the apiserver, of which parallel suites make thousands) may take it
// before the process binds it. CI once lost a controller to "bind: address already in use" so.
//
//   - Ports come from below the kernel's ephemeral range (ip_local_port_range), which the kernel
//     never gives to outgoing connections or to listen(0).
//   - Each port is reserved across processes by an flock on a file named after it; the lock is
//     held until this test binary exits, when the kernel releases it, so a crashed test leaks
//     nothing.

// portReserve holds the ports this test binary has reserved: their lock files stay open.
type portReserve struct {
	mu     sync.Mutex
	next   int
	held   map[int]*os.File
	lo, hi int
}

// reserved is the process's one reservation table. It is state the kernel ties to this process
// (its flocks), not configuration, so it lives as long as the process does.
var reserved = &portReserve{held: map[int]*os.File{}}

// FreePorts returns n distinct TCP ports free on 127.0.0.1 and reserved for this test binary.
func FreePorts(n int) ([]int, error) { return FreePortsOn("127.0.0.1", n) }

// FreePortsOn returns n distinct TCP ports free on host (an IP address), outside the kernel's
// ephemeral range and reserved for this test binary against other test binaries.
func FreePortsOn(host string, n int) ([]int, error) {
	return reserved.take(host, n)
}

func (r *portReserve) take(host string, n int) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hi == 0 {
		lo, hi, err := portWindow("/proc/sys/net/ipv4/ip_local_port_range")
		if err != nil {
			return nil, err
		}
		r.lo, r.hi = lo, hi
		// Start at a place of this process's own, so parallel binaries rarely probe the same
		// ports first.
		r.next = lo + os.Getpid()%(hi-lo)
	}
	dir := filepath.Join(os.TempDir(), "sharewarden-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("making the port reservation directory: %w", err)
	}
	out := make([]int, 0, n)
	for tried := 0; len(out) < n; tried++ {
		if tried > r.hi-r.lo {
			return nil, fmt.Errorf("no free port in %d-%d on %s: every one is reserved or bound", r.lo, r.hi, host)
		}
		p := r.next
		r.next++
		if r.next >= r.hi {
			r.next = r.lo
		}
		if _, mine := r.held[p]; mine {
			continue
		}
		f, err := lockPort(dir, p)
		if err != nil {
			return nil, err
		}
		if f == nil {
			continue // another test binary holds it
		}
		if !bindable(host, p) {
			_ = f.Close()
			continue
		}
		r.held[p] = f
		out = append(out, p)
	}
	return out, nil
}

// lockPort takes port p's lock file without waiting. It returns nil, nil when another process
// holds it.
func lockPort(dir string, p int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("opening the reservation of port %d: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("locking the reservation of port %d: %w", p, err)
	}
	return f, nil
}

// bindable says whether something may listen on host:p now.
func bindable(host string, p int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// portWindow reads the kernel's ephemeral range from path and returns a window [lo, hi) of
// ports outside it: below it when there is room, else above it.
func portWindow(path string) (lo, hi int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	return windowOutside(string(b))
}

// windowOutside returns a window [lo, hi) of at least 2,000 ports outside the ephemeral range
// "first last" (the format of ip_local_port_range), away from the well-known ports below 10000.
func windowOutside(rng string) (lo, hi int, err error) {
	f := strings.Fields(rng)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ephemeral port range %q: want two numbers", strings.TrimSpace(rng))
	}
	first, err1 := strconv.Atoi(f[0])
	last, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil || first > last {
		return 0, 0, fmt.Errorf("ephemeral port range %q: want two ordered numbers", strings.TrimSpace(rng))
	}
	const floor, need = 10000, 2000
	if first-floor >= need {
		return floor, first, nil
	}
	if 65536-(last+1) >= need {
		return last + 1, 65536, nil
	}
	return 0, 0, fmt.Errorf("ephemeral port range %d-%d leaves no %d ports outside it for tests", first, last, need)
}
