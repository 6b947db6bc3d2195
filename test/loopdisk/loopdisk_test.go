package loopdisk

import "testing"

func TestMountSource(t *testing.T) {
	const mountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
97 22 7:3 / /tmp/x/staging rw,relatime shared:50 - ext4 /dev/loop3 rw
98 22 7:3 / /tmp/x/target rw,relatime shared:50 - ext4 /dev/loop3 rw
99 22 0:52 / /tmp/x/over rw,relatime - tmpfs tmpfs rw
100 99 7:4 / /tmp/x/over rw,relatime shared:51 - ext4 /dev/loop4 rw
101 22 0:53 / /tmp/x/odd rw,relatime shared:52 master:3 - fuse.sshfs host:/dir rw
`
	cases := []struct{ dir, want string }{
		{"/tmp/x/staging", "/dev/loop3"},
		{"/tmp/x/target", "/dev/loop3"},
		{"/tmp/x/over", "/dev/loop4"}, // the mount on top
		{"/tmp/x/odd", "host:/dir"},   // optional fields before the separator
		{"/tmp/x", ""},
	}
	for _, tc := range cases {
		if got := mountSource(mountinfo, tc.dir); got != tc.want {
			t.Errorf("mountSource(%s) = %q, want %q", tc.dir, got, tc.want)
		}
	}
}
