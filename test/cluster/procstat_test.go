package cluster

import (
	"os"
	"testing"
)

func TestProcessStats(t *testing.T) {
	pid := os.Getpid()
	// Burn a little CPU so that at least one clock tick is counted.
	for x, cpu := 0, ProcessCPU(pid); ProcessCPU(pid) == cpu; x++ {
		_ = x * x
	}
	if rss := ProcessMemory(pid, "VmRSS"); rss <= 0 {
		t.Errorf("VmRSS of this test: %d", rss)
	}
	if got := ProcessMemory(pid, "NoSuchField"); got != 0 {
		t.Errorf("unknown field: %d, want 0", got)
	}
	if got, mem := ProcessCPU(-1), ProcessMemory(-1, "VmRSS"); got != 0 || mem != 0 {
		t.Errorf("no such process: %v, %d", got, mem)
	}
}
