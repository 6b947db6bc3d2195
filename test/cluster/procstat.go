package cluster

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcessCPU is the user+system CPU time pid has used so far (Linux clock ticks, 100/s), or 0
// when it cannot be read. Benchmarks use it to say what a component of theirs cost.
func ProcessCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name in parentheses may hold spaces: count fields after its ')'.
	end := strings.LastIndexByte(string(raw), ')')
	if end < 0 || end+2 > len(raw) {
		return 0
	}
	f := strings.Fields(string(raw[end+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// ProcessMemory is a Vm* field of /proc/<pid>/status (VmRSS, VmHWM, ...) in bytes, or 0 when it
// cannot be read.
func ProcessMemory(pid int, field string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
