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
	"strconv"
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

// Options tune AttachWith.
type Options struct {
	// Avoid lists loop devices the image must not get (the disk's device on the node it left).
	Avoid []string
	// ReadOnly attaches the image read-only and mounts it read-only.
	ReadOnly bool
	// MountOptions are passed to mount -o.
	MountOptions []string
	// Grow checks the filesystem (e2fsck -p, as a kubelet checks a disk before mounting it
	// read-write) and grows it offline to fill the image (resize2fs) before mounting: a disk
	// grown while detached, or restored larger than its snapshot, comes up at its full size
	// without an online resize (which needs CAP_SYS_RESOURCE). Ignored with ReadOnly.
	Grow bool
}

// Attach attaches image to a free loop device and mounts it at mountPoint (created if missing).
// If the next free device is one of avoid (the disk's device on the node it left), a
// placeholder holds it while the image is attached, so a move always changes the device number.
func Attach(ctx context.Context, image, mountPoint string, avoid ...string) (*Disk, error) {
	return AttachWith(ctx, image, mountPoint, Options{Avoid: avoid})
}

// AttachWith is Attach with options.
func AttachWith(ctx context.Context, image, mountPoint string, o Options) (*Disk, error) {
	if err := os.MkdirAll(mountPoint, 0o755); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	if next, err := run(ctx, "losetup", "--find"); err == nil && slices.Contains(o.Avoid, next) {
		release, err := hold(ctx, filepath.Dir(image))
		if err != nil {
			return nil, err
		}
		defer release()
	}
	loArgs := []string{"--find", "--show"}
	mountArgs := []string{"-t", "ext4"}
	opts := o.MountOptions
	if o.ReadOnly {
		loArgs = append(loArgs, "--read-only")
		opts = append(slices.Clone(opts), "ro")
	}
	if len(opts) > 0 {
		mountArgs = append(mountArgs, "-o", strings.Join(opts, ","))
	}
	dev, err := run(ctx, "losetup", append(loArgs, image)...)
	if err != nil {
		return nil, err
	}
	d := &Disk{Image: image, Device: dev, MountPoint: mountPoint}
	if o.Grow && !o.ReadOnly {
		if err := growOffline(ctx, dev); err != nil {
			_, _ = run(context.WithoutCancel(ctx), "losetup", "-d", dev)
			return nil, err
		}
	}
	if _, err := run(ctx, "mount", append(mountArgs, dev, mountPoint)...); err != nil {
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

// growOffline checks the unmounted filesystem on dev and grows it to fill dev.
func growOffline(ctx context.Context, dev string) error {
	// e2fsck -p exits 1 when it fixed something (a journal replayed, say): fine to mount.
	if _, err := run(ctx, "e2fsck", "-f", "-p", dev); err != nil && exitCode(err) != 1 {
		return err
	}
	_, err := run(ctx, "resize2fs", dev)
	return err
}

// ErrNoOnlineResize is why Grow cannot grow a mounted filesystem here: ext4's online resize
// needs CAP_SYS_RESOURCE, which this process lacks (as in many containers).
var ErrNoOnlineResize = errors.New("growing a mounted ext4 filesystem needs CAP_SYS_RESOURCE, which this process lacks; detach the disk and attach it with Options.Grow to grow it offline")

// Grow makes a grown image's new space usable: the loop device re-reads the image's size
// (losetup -c) and the mounted filesystem is resized online to fill it (resize2fs). It is a
// no-op on a disk already at its image's size; otherwise it needs CAP_SYS_RESOURCE
// (ErrNoOnlineResize).
func (d *Disk) Grow(ctx context.Context) error {
	if _, err := run(ctx, "losetup", "-c", d.Device); err != nil {
		return err
	}
	if _, err := run(ctx, "resize2fs", d.Device); err != nil {
		if !hasCapability(capSysResource) {
			return fmt.Errorf("%w: %w", ErrNoOnlineResize, err)
		}
		return err
	}
	return nil
}

// capSysResource is CAP_SYS_RESOURCE's bit in the capability sets.
const capSysResource = 24

// hasCapability tells whether bit is in this process's effective capabilities.
func hasCapability(bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<bit) != 0
		}
	}
	return false
}

// exitCode is the exit status of a command run failed with, -1 if it did not exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
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

// MountDevice is the device mounted at dir (the mount source in /proc/self/mountinfo), or ""
// when dir is not a mount point; for a bind mount it is the device of the mount it binds.
func MountDevice(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	return mountSource(string(b), filepath.Clean(dir))
}

// mountSource finds dir's last mount in a mountinfo text (the one on top) and returns its
// source: the field after the " - " separator and the filesystem type.
func mountSource(mountinfo, dir string) string {
	src := ""
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[4] != dir {
			continue
		}
		if i := slices.Index(f, "-"); i >= 0 && i+2 < len(f) {
			src = f[i+2]
		}
	}
	return src
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
