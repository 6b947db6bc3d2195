// Package loopdisk makes filesystem images that behave like network disks moving between
// nodes: an ext4 image attached to a loop device and mounted, detached again, and re-attached on
// another loop device (another device number), as a cloud disk gets another device number on
// the node it moves to. Needs root, losetup, mkfs.ext4 and mount.
//
// Every Attach is undone by its Detach; callers own that (tests through t.Cleanup). Only loop
// devices this package attached are ever detached: the machine's others are left alone.
package loopdisk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// cmdTimeout bounds each losetup, mkfs and mount.
const cmdTimeout = 60 * time.Second

// Create makes a sparse image file of size bytes formatted ext4 (journaled, as shipped disks are).
func Create(ctx context.Context, image string, size int64) error {
	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sizing disk image: %w", err)
	}
	if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", image); err != nil {
		return err
	}
	return nil
}

// Disk is an image attached to a loop device and mounted.
type Disk struct {
	Image, Device, MountPoint string
	// Rdev is the device number the mounted filesystem reports (st_dev of the mount point).
	Rdev uint64
}

// Attach attaches image to a free loop device and mounts it at mountPoint (created if missing).
// If the next free device is one of avoid (the disk's device on the node it left), a
// placeholder holds it while the image is attached, so a move always changes the device number.
func Attach(ctx context.Context, image, mountPoint string, avoid ...string) (*Disk, error) {
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	if next, err := run(ctx, "losetup", "--find"); err == nil && slices.Contains(avoid, next) {
		release, err := hold(ctx, filepath.Dir(image))
		if err != nil {
			return nil, err
		}
		defer release()
	}
	dev, err := run(ctx, "losetup", "--find", "--show", image)
	if err != nil {
		return nil, err
	}
	d := &Disk{Image: image, Device: dev, MountPoint: mountPoint}
	if _, err := run(ctx, "mount", "-t", "ext4", dev, mountPoint); err != nil {
		_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mountPoint, &st); err != nil {
		_ = d.Detach(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("stat of the mount: %w", err)
	}
	d.Rdev = st.Dev
	return d, nil
}

// Move detaches d and attaches its image again at mountPoint on another loop device, as a disk
// that moves to another node: the new device is bound before the old one is released, so the
// numbers differ.
func (d *Disk) Move(ctx context.Context, mountPoint string) (*Disk, error) {
	if _, err := run(ctx, "umount", d.MountPoint); err != nil {
		return nil, err
	}
	dev, err := run(ctx, "losetup", "--find", "--show", d.Image)
	if err != nil {
		return nil, err
	}
	if _, err := run(ctx, "losetup", "-d", d.Device); err != nil {
		_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
		return nil, err
	}
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
		return nil, fmt.Errorf("mount point: %w", err)
	}
	n := &Disk{Image: d.Image, Device: dev, MountPoint: mountPoint}
	*d = Disk{Image: d.Image} // d is detached now; Detach on it is a no-op
	if _, err := run(ctx, "mount", "-t", "ext4", dev, mountPoint); err != nil {
		_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mountPoint, &st); err != nil {
		_ = n.Detach(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("stat of the mount: %w", err)
	}
	n.Rdev = st.Dev
	return n, nil
}

// hold binds a small placeholder file to the next free loop device, until release.
func hold(ctx context.Context, dir string) (release func(), err error) {
	f, err := os.CreateTemp(dir, "placeholder-*.img")
	if err != nil {
		return nil, fmt.Errorf("placeholder: %w", err)
	}
	name := f.Name()
	err = f.Truncate(1 << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return nil, fmt.Errorf("placeholder: %w", err)
	}
	dev, err := run(ctx, "losetup", "--find", "--show", name)
	if err != nil {
		_ = os.Remove(name)
		return nil, err
	}
	return func() {
		_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
		_ = os.Remove(name)
	}, nil
}

// Detach unmounts the disk and frees its loop device; it is a no-op on a detached disk. An
// unmount that fails because the mount is busy is retried for a while (a killed server's
// files close a moment after it exits).
func (d *Disk) Detach(ctx context.Context) error {
	if d.Device == "" {
		return nil
	}
	var errs []error
	if mounted(d.MountPoint) {
		var err error
		for range 50 {
			if _, err = run(ctx, "umount", d.MountPoint); err == nil || !mounted(d.MountPoint) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := run(ctx, "losetup", "-d", d.Device); err != nil {
		errs = append(errs, err)
	} else {
		d.Device = ""
	}
	return errors.Join(errs...)
}

// UUID is the filesystem UUID blkid reads from the device.
func (d *Disk) UUID(ctx context.Context) (string, error) {
	return run(ctx, "blkid", "-s", "UUID", "-o", "value", d.Device)
}

// Attached lists the loop devices backed by image (losetup -j), to check nothing leaked.
func Attached(ctx context.Context, image string) ([]string, error) {
	out, err := run(ctx, "losetup", "-j", image)
	if err != nil || out == "" {
		return nil, err
	}
	var devs []string
	for _, l := range strings.Split(out, "\n") {
		if dev, _, ok := strings.Cut(l, ":"); ok {
			devs = append(devs, dev)
		}
	}
	return devs, nil
}

// mounted tells whether dir is a mount point, from /proc/self/mountinfo.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	dir = filepath.Clean(dir)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// Mounted tells whether dir is a mount point.
func Mounted(dir string) bool { return mounted(dir) }

func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}
