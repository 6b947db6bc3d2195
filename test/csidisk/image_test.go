package csidisk

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCopyImage(t *testing.T) {
	cases := []struct {
		name   string
		chunks map[int64]string // offset -> data; the rest is holes
		size   int64            // of the source
		grow   int64            // size asked of the copy
	}{
		{name: "all hole", size: 8 * mib},
		{name: "data at both ends", chunks: map[int64]string{0: "head", 8*mib - 4: "tail"}, size: 8 * mib},
		{name: "data in the middle, grown", chunks: map[int64]string{3 * mib: "middle"}, size: 8 * mib, grow: 16 * mib},
		{name: "no holes", chunks: map[int64]string{0: string(bytes.Repeat([]byte("x"), 64<<10))}, size: 64 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
			f, err := os.Create(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			for off, data := range tc.chunks {
				if _, err := f.WriteAt([]byte(data), off); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := copyImage(dst, src, tc.grow); err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, make([]byte, max(tc.grow-tc.size, 0))...)
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("copy of %d bytes differs from the source (%d bytes)", len(got), len(want))
			}
			var st syscall.Stat_t
			if err := syscall.Stat(dst, &st); err != nil {
				t.Fatal(err)
			}
			if written := st.Blocks * 512; written > tc.size/2 && tc.size > 1*mib {
				t.Fatalf("copy occupies %d bytes of %d: holes were written out", written, tc.size)
			}
			if _, err := os.Stat(dst + ".tmp"); !os.IsNotExist(err) {
				t.Fatalf("temporary copy left behind: %v", err)
			}
		})
	}
}
