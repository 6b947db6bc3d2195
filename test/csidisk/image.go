package csidisk

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// Linux lseek whences for sparse files (not in package syscall).
const (
	seekData = 3
	seekHole = 4
)

// copyImage writes a copy of the image src to dst (which must not exist) at size bytes (at
// least src's size), keeping holes: the images are sparse, and a copy that wrote them out
// would cost their whole size. The copy is made under a temporary name and renamed into
// place, so dst exists only complete.
func copyImage(dst, src string, size int64) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return fmt.Errorf("opening image: %w", err)
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating image copy: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, dst)
		}
		if err != nil {
			_ = os.Remove(tmp)
			err = fmt.Errorf("copying image %s: %w", src, err)
		}
	}()
	if err := copyData(out, in, fi.Size()); err != nil {
		return err
	}
	if err := out.Truncate(max(size, fi.Size())); err != nil {
		return err
	}
	return out.Sync()
}

// copyData copies the data extents of in (size bytes long) to the same offsets of out,
// skipping the holes between them.
func copyData(out, in *os.File, size int64) error {
	for off := int64(0); off < size; {
		data, err := in.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			return nil // only a hole remains
		}
		if err != nil {
			return fmt.Errorf("finding data: %w", err)
		}
		hole, err := in.Seek(data, seekHole)
		if err != nil {
			return fmt.Errorf("finding a hole: %w", err)
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(out, in, hole-data); err != nil {
			return fmt.Errorf("copying %d bytes at %d: %w", hole-data, data, err)
		}
		off = hole
	}
	return nil
}

// Linux ioctls that freeze and thaw a mounted filesystem (_IOWR('X', 119/120, int)), as
// fsfreeze(8) does; not in package syscall.
const (
	ioctlFreeze = 0xC0045877
	ioctlThaw   = 0xC0045878
)

// freeze suspends writes to the filesystem mounted at dir, with everything written so far on
// the disk, until thaw is called: the image copied meanwhile is the filesystem at one instant.
// A sync(2)-only copy would be consistent only if nothing wrote while it ran; a server on the
// volume may, so the copy freezes, as a cloud snapshot is point-in-time.
func freeze(dir string) (thaw func() error, err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("freezing %s: %w", dir, err)
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlFreeze, 0); errno != 0 {
		_ = f.Close()
		return nil, fmt.Errorf("freezing %s: %w", dir, errno)
	}
	return func() error {
		defer f.Close()
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), ioctlThaw, 0); errno != 0 {
			return fmt.Errorf("thawing %s: %w", dir, errno)
		}
		return nil
	}, nil
}
