package app

import "testing"

func TestMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name, env, limit string
		want             int64
		ok               bool
	}{
		{"512Mi container", "", "536870912\n", 483183819, true},
		{"cgroup v2 without a limit", "", "max\n", 0, false},
		{"cgroup v1 without a limit", "", "9223372036854771712\n", 0, false},
		{"operator set GOMEMLIMIT", "400MiB", "536870912\n", 0, false},
		{"garbage", "", "lots", 0, false},
		{"zero", "", "0", 0, false},
	} {
		got, ok := memoryLimit(tc.env, tc.limit)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: memoryLimit(%q, %q) = %d, %v; want %d, %v", tc.name, tc.env, tc.limit, got, ok, tc.want, tc.ok)
		}
	}
}
