package app

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
)

// cgroupMemoryFiles hold a container's memory limit: cgroup v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimit is the Go soft memory limit for a process whose cgroup allows limit bytes (the
// contents of memory.max or memory.limit_in_bytes): 90 % of it, leaving room for what the Go
// heap does not count (goroutine stacks, the binary, the runtime), so that the garbage
// collector works harder as the heap nears the container's limit instead of letting it grow
// to twice the live heap and the kernel kill the pod. It is not set when the operator set
// GOMEMLIMIT (goMemLimit) or when there is no limit ("max", or v1's near-2^63 value).
func memoryLimit(goMemLimit, limit string) (int64, bool) {
	if goMemLimit != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(limit), 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n / 10 * 9, true
}

// setMemoryLimit applies memoryLimit for this process's cgroup.
func setMemoryLimit(logger logr.Logger) {
	for _, f := range cgroupMemoryFiles {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if n, ok := memoryLimit(os.Getenv("GOMEMLIMIT"), string(raw)); ok {
			debug.SetMemoryLimit(n)
			logger.Info("Go memory limit set from the container's", "bytes", n, "cgroupFile", f)
		}
		return
	}
}
