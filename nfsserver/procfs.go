package nfsserver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ProcIO is a process's I/O accounting from /proc/<pid>/io (see proc(5)). The kernel sums it
// over every thread of the process, living and exited, so for ganesha it is all NFS I/O the
// server did since it started.
type ProcIO struct {
	// ReadChars and WrittenChars (rchar, wchar) are bytes passed to read- and write-like
	// syscalls, on files and on sockets alike, whether or not storage was touched.
	ReadChars, WrittenChars uint64
	// ReadSyscalls and WriteSyscalls (syscr, syscw) count those syscalls.
	ReadSyscalls, WriteSyscalls uint64
	// ReadBytes and WrittenBytes (read_bytes, write_bytes) are bytes the process made the
	// storage layer fetch or dirtied for it to write: the backing volume's own traffic.
	ReadBytes, WrittenBytes uint64
	// CancelledWriteBytes (cancelled_write_bytes) were dirtied and then not written (the file
	// was truncated or deleted first).
	CancelledWriteBytes uint64
}

// ParseProcIO decodes the contents of /proc/<pid>/io: "key: value" lines. Every one of the
// seven fields must be there exactly once; unknown keys (a newer kernel's) are ignored.
func ParseProcIO(data []byte) (ProcIO, error) {
	var io ProcIO
	fields := map[string]*uint64{
		"rchar": &io.ReadChars, "wchar": &io.WrittenChars,
		"syscr": &io.ReadSyscalls, "syscw": &io.WriteSyscalls,
		"read_bytes": &io.ReadBytes, "write_bytes": &io.WrittenBytes,
		"cancelled_write_bytes": &io.CancelledWriteBytes,
	}
	seen := map[string]bool{}
	for n, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return ProcIO{}, fmt.Errorf("line %d %q: want \"key: value\"", n+1, line)
		}
		dst, known := fields[key]
		if !known {
			continue
		}
		if seen[key] {
			return ProcIO{}, fmt.Errorf("line %d: %s given twice", n+1, key)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return ProcIO{}, fmt.Errorf("line %d: %s: %w", n+1, key, err)
		}
		*dst = v
		seen[key] = true
	}
	for key := range fields {
		if !seen[key] {
			return ProcIO{}, fmt.Errorf("no %s line", key)
		}
	}
	return io, nil
}

// TCPStateEstablished is the st column of an established socket in /proc/net/tcp.
const TCPStateEstablished = 0x01

// TCPSocket is one row of /proc/net/tcp or /proc/net/tcp6.
type TCPSocket struct {
	Local, Remote netip.AddrPort
	State         uint8
}

// ParseProcNetTCP decodes /proc/net/tcp or /proc/net/tcp6 (the pod's network namespace's, as
// every process in the pod sees it): a header line, then one socket a line, addresses as the
// kernel prints them (hex words of the address in the machine's byte order, and a hex port).
// IPv4-mapped IPv6 addresses are returned as IPv4, so a client counts once whichever family
// its connection reached.
func ParseProcNetTCP(data []byte) ([]TCPSocket, error) {
	var out []TCPSocket
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 512), 64<<10)
	header := true
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if header {
			header = false
			if f[0] != "sl" {
				return nil, fmt.Errorf("line %d: want the \"sl local_address ...\" header, got %q", n, sc.Text())
			}
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("line %d: want at least 4 fields, got %d", n, len(f))
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: local address: %w", n, err)
		}
		remote, err := parseHexAddrPort(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: remote address: %w", n, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("line %d: state %q: %w", n, f[3], err)
		}
		out = append(out, TCPSocket{Local: local, Remote: remote, State: uint8(st)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if header {
		return nil, errors.New("empty: no header line")
	}
	return out, nil
}

// parseHexAddrPort decodes "0100007F:0801" (127.0.0.1:2049 on a little-endian machine) or the
// 32-digit IPv6 form.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q: want ADDRESS:PORT", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil || len(portHex) != 4 {
		return netip.AddrPort{}, fmt.Errorf("%q: port is not 4 hex digits", s)
	}
	if len(addrHex) != 8 && len(addrHex) != 32 {
		return netip.AddrPort{}, fmt.Errorf("%q: address is not 8 or 32 hex digits", s)
	}
	raw, err := hex.DecodeString(addrHex)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %w", s, err)
	}
	// The kernel prints each 32-bit word of the address, as held in memory, with %08X: reading
	// the hex back as a number and storing it in the machine's order gives the address bytes.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// Clients counts the distinct remote addresses with an established connection to port among
// socks, and the connections. A kernel NFS client shares one connection (or nconnect's few)
// per server among all the mounts of its node, and kubelet mounts from the node's own address,
// so distinct addresses are the nodes that have the volume mounted.
func Clients(socks []TCPSocket, port uint16) (clients, connections int) {
	seen := map[netip.Addr]bool{}
	for _, s := range socks {
		if s.State != TCPStateEstablished || s.Local.Port() != port {
			continue
		}
		connections++
		seen[s.Remote.Addr()] = true
	}
	return len(seen), connections
}
