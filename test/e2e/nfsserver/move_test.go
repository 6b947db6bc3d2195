package nfsserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"

	"github.com/sharewarden/sharewarden/test/loopdisk"
	"github.com/sharewarden/sharewarden/test/nfs4"
)

// opTimeout bounds one NFS operation with its retries; it covers a whole failover and grace.
const opTimeout = 90 * time.Second

// newDisk makes an ext4 image on a loop device, mounted for an agent; it is detached when the
// test ends, and the test fails if a loop device of it is left behind.
func newDisk(t testing.TB) *loopdisk.Disk { return newDiskOfSize(t, 64<<20) }

// newDiskOfSize is newDisk with an image of size bytes.
func newDiskOfSize(t testing.TB, size int64) *loopdisk.Disk {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	image := filepath.Join(dir, "disk.img")
	if err := loopdisk.Create(ctx, image, size); err != nil {
		t.Fatal(err)
	}
	d, err := loopdisk.Attach(ctx, image, filepath.Join(dir, "node-a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if devs, err := loopdisk.Attached(ctx, image); err != nil || len(devs) > 0 {
			t.Errorf("loop devices of %s left attached: %q, %v", image, devs, err)
		}
	})
	detachAtEnd(t, d)
	return d
}

// detachAtEnd detaches d when the test ends (cleanups run last-registered first, so after the
// agents using it have stopped).
func detachAtEnd(t testing.TB, d *loopdisk.Disk) {
	t.Cleanup(func() {
		if err := d.Detach(context.Background()); err != nil {
			t.Errorf("detaching %s: %v", d.Device, err)
		}
	})
}

// follower dials whichever address the test last set, as a Service IP follows its server.
type follower struct{ addr atomic.Value }

func (f *follower) set(a *agent) {
	f.addr.Store(net.JoinHostPort(a.host, strconv.Itoa(a.nfsPort)))
}

func (f *follower) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", f.addr.Load().(string))
}

func dialClient(t testing.TB, cfg nfs4.Config) *nfs4.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := nfs4.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("NFSv4.%d client %s: %v", cfg.MinorVersion, cfg.Owner, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func opCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

// killAgent SIGKILLs the agent, as a node dying takes it, and fails the test unless ganesha
// dies with it: ganesha must never serve without its agent (which holds the volume's lease),
// even when the agent cannot clean up.
func killAgent(t *testing.T, a *agent) {
	t.Helper()
	pid := a.ganeshaPID()
	a.signal(syscall.SIGKILL)
	a.waitExit()
	deadline := time.Now().Add(exitTimeout)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("ganesha (pid %d) still runs %s after its agent was killed", pid, exitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMove is the promise that file handles and opens survive a move: a disk served by one
// agent moves to another loop device (another device number, as on another node) and another
// agent on another address serves it under the same volume ID.
func TestMove(t *testing.T) {
	runParallel(t,
		subtest{"shipped config: handle and open survive", testMoveShipped},
		subtest{"fsid_device = true: handle goes stale", testMoveFsidDevice},
		subtest{"no block device visible, as in a pod: handle survives on ext4", testMoveNoBlockDevice},
		subtest{"two moves in a row: grace lifted early on each", testMoveTwice},
		subtest{"node's blkid cache describes the device's last disk: handle survives", testMoveStaleNodeBlkidCache},
	)
}

func testMoveShipped(t *testing.T) {
	s := serveNewDisk(t, "127.0.0.6")
	c, o, f, written := openAndWrite(t, s.a, "move-shipped")
	before, err := c.GetAttr(opCtx(t), o.FH())
	if err != nil {
		t.Fatal(err)
	}
	oldClientID, oldStateID := c.ClientID(), o.StateID()
	b := s.moveTo("127.0.0.7")
	ctx := opCtx(t)
	first := written
	// A client that was not on the old server gets NFS4ERR_GRACE for a new open: the old
	// client may still reclaim.
	other := dialClient(t, nfs4.Config{Addr: net.JoinHostPort(b.host, strconv.Itoa(b.nfsPort)), Owner: "move-shipped-other"})
	otherExport, err := other.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(ctx, otherExport, "other.txt", nfs4.OpenFlags{Create: true, Mode: 0o644}); !errors.Is(err, nfs4.ErrGrace) {
		t.Fatalf("a new client's OPEN right after the move: %v, want NFS4ERR_GRACE", err)
	}

	f.set(b)
	// The handle taken before the move still names the file.
	after, err := c.GetAttr(ctx, o.FH())
	if err != nil {
		t.Fatalf("GETATTR of the old handle after the move: %v", err)
	}
	if after.FileID != before.FileID || after.Size != before.Size {
		t.Fatalf("after the move the handle names fileid %d size %d, want %d size %d", after.FileID, after.Size, before.FileID, before.Size)
	}
	// The client recovered as Linux does: the old session and client ID were gone, the open
	// was reclaimed, and writes through it carry on.
	rs := c.Recoveries()
	if len(rs) != 1 || !errors.Is(rs[0].Trigger, nfs4.ErrBadSession) || rs[0].CreateSession != nfs4.ErrStaleClientID ||
		!rs[0].NewClientID || rs[0].Reclaimed != 1 || rs[0].Lost != 0 {
		t.Fatalf("recoveries = %+v; want one, after NFS4ERR_BADSESSION, CREATE_SESSION NFS4ERR_STALE_CLIENTID, one open reclaimed", rs)
	}
	if c.ClientID() == oldClientID || o.Reclaims() != 1 {
		t.Fatalf("client ID %x (was %x), open reclaimed %d times; want a new client ID and one reclaim", c.ClientID(), oldClientID, o.Reclaims())
	}
	second := bytes.Repeat([]byte("after the move\n"), 4096)
	w, err := o.Write(ctx, uint64(len(first)), second, nfsv4.UNSTABLE4)
	if err != nil {
		t.Fatalf("WRITE through the reclaimed open: %v", err)
	}
	verf, err := o.Commit(ctx)
	if err != nil || verf != w.Verifier {
		t.Fatalf("COMMIT = %x, %v; want the WRITE's verifier %x", verf, err, w.Verifier)
	}
	got, err := o.ReadAll(ctx)
	if err != nil || !bytes.Equal(got, append(append([]byte{}, first...), second...)) {
		t.Fatalf("read back %d bytes, %v; want both writes, %d bytes", len(got), err, len(first)+len(second))
	}
	// The stateid from before the move is refused as stale, not taken for someone else's.
	_, err = c.Compound(ctx, &nfsv4.NfsArgop4_OP_PUTFH{Opputfh: nfsv4.Putfh4args{Object: o.FH()}},
		&nfsv4.NfsArgop4_OP_READ{Opread: nfsv4.Read4args{Stateid: oldStateID, Count: 1}})
	if !errors.Is(err, nfs4.ErrStaleStateID) {
		t.Fatalf("READ with the stateid from before the move: %v, want NFS4ERR_STALE_STATEID", err)
	}
	// Every client on record sent RECLAIM_COMPLETE, so grace ends before its 15 s (ganesha's
	// reaper checks every few seconds): the other client's open goes through in the end, and
	// ganesha's log shows it lifted grace early because all clients on record had reclaimed.
	for {
		_, err := other.Open(ctx, otherExport, "other.txt", nfs4.OpenFlags{Create: true, Mode: 0o644})
		if err == nil {
			break
		}
		if !errors.Is(err, nfs4.ErrGrace) || ctx.Err() != nil {
			t.Fatalf("a new client's OPEN once the old one reclaimed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	g := b.grace()
	if g.lastCheck != "reclaim complete(1) clid count(1)" || !g.lifted.Before(g.start.Add(g.duration)) {
		t.Fatalf("grace %+v; want it lifted before its end because the one client on record sent RECLAIM_COMPLETE", g)
	}
	if err := o.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// openAndWrite connects a recovering 4.2 client to a, creates and opens /export/log.bin and
// writes to it (FILE_SYNC); it returns the client, the open, the address follower and the data.
func openAndWrite(t *testing.T, a *agent, owner string) (*nfs4.Client, *nfs4.Open, *follower, []byte) {
	t.Helper()
	f := &follower{}
	f.set(a)
	c := dialClient(t, nfs4.Config{Dial: f.dial, Owner: owner, MinorVersion: 2, Recover: true, Logf: t.Logf})
	ctx := opCtx(t)
	export, err := c.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Open(ctx, export, "log.bin", nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("before the move\n"), 4096)
	if _, err := o.Write(ctx, 0, data, nfsv4.FILE_SYNC4); err != nil {
		t.Fatal(err)
	}
	return c, o, f, data
}

// served is a disk an agent serves, for the move tests.
type served struct {
	t     *testing.T
	disk  *loopdisk.Disk
	a     *agent // the agent serving the disk now
	extra []string
	moves int
}

// serveNewDisk serves a new disk (newDisk) from an agent on host started with extra, once it
// is healthy.
func serveNewDisk(t *testing.T, host string, extra ...string) *served {
	t.Helper()
	s := &served{t: t, disk: newDisk(t), extra: extra}
	s.a = startAgent(t, agentConfig{host: host, volumeDir: s.disk.MountPoint, extra: extra})
	s.a.waitHealthz(http.StatusOK)
	return s
}

// moveTo kills the serving agent (its node dies), moves the disk to another loop device and
// mount point, as on the node the volume fails over to, and serves it from a new agent on host
// (with the same extra arguments), once that is healthy. It returns the new agent.
func (s *served) moveTo(host string) *agent {
	t := s.t
	t.Helper()
	killAgent(t, s.a)
	s.moves++
	moved, err := s.disk.Move(opCtx(t), filepath.Join(filepath.Dir(s.disk.MountPoint), fmt.Sprintf("node-%d", s.moves+1)))
	if err != nil {
		t.Fatal(err)
	}
	detachAtEnd(t, moved)
	if moved.Rdev == s.disk.Rdev || moved.Device == s.disk.Device {
		t.Fatalf("the disk kept device %s (%d): the move would prove nothing", moved.Device, moved.Rdev)
	}
	s.disk = moved
	s.a = startAgent(t, agentConfig{host: host, volumeDir: moved.MountPoint, extra: s.extra})
	s.a.waitHealthz(http.StatusOK)
	return s.a
}

// ganeshaWrapper writes script, a shell script that runs ganesha.nfsd in its own way, and
// returns the agent arguments that make it the agent's ganesha.
func ganeshaWrapper(t *testing.T, script string) []string {
	t.Helper()
	wrapper := filepath.Join(t.TempDir(), "ganesha-wrapper")
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"--ganesha-binary=" + wrapper}
}

// testMoveFsidDevice is the same move with ganesha told to put the device number in its file
// handles (fsid_device = true): the old handle must go stale, or the shipped case above would
// prove nothing.
func testMoveFsidDevice(t *testing.T) {
	s := serveNewDisk(t, "127.0.0.8", ganeshaWrapper(t, `#!/bin/sh
conf=; prev=
for a in "$@"; do [ "$prev" = -f ] && conf=$a; prev=$a; done
sed -i 's/fsid_device = false;/fsid_device = true;/' "$conf" || exit 1
exec ganesha.nfsd "$@"
`)...)
	if conf, err := os.ReadFile(filepath.Join(s.a.runtimeDir, "ganesha.conf")); err != nil || !strings.Contains(string(conf), "fsid_device = true;") {
		t.Fatalf("ganesha.conf does not set fsid_device = true (%v)", err)
	}
	c, o, f, _ := openAndWrite(t, s.a, "move-fsid-device")
	f.set(s.moveTo("127.0.0.9"))
	ctx := opCtx(t)
	if _, err := c.GetAttr(ctx, o.FH()); !errors.Is(err, nfs4.ErrStale) {
		t.Fatalf("GETATTR of the old handle after a move with fsid_device = true: %v, want NFS4ERR_STALE", err)
	}
	if rs := c.Recoveries(); len(rs) != 1 || rs[0].Reclaimed != 0 || rs[0].Lost != 1 {
		t.Fatalf("recoveries = %+v; want one with the open lost (its handle is stale)", rs)
	}
	if _, err := o.Write(ctx, 0, []byte("x"), nfsv4.FILE_SYNC4); !errors.Is(err, nfs4.ErrOpenLost) || !errors.Is(err, nfs4.ErrStale) {
		t.Fatalf("WRITE through the lost open: %v, want ErrOpenLost wrapping NFS4ERR_STALE", err)
	}
}

// testMoveNoBlockDevice serves the disk from a ganesha that, as in an unprivileged pod, sees the
// filesystem mounted but not its block device (a private /dev without it, and no blkid cache),
// so it cannot read the UUID through blkid and falls back to statfs's f_fsid. On ext4 that is
// derived from the filesystem UUID, so the handle must still survive a move.
func testMoveNoBlockDevice(t *testing.T) {
	s := serveNewDisk(t, "127.0.0.11", ganeshaWrapper(t, `#!/bin/sh
exec unshare -m sh -c '
mount -t tmpfs -o size=1m none /dev &&
mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 &&
mknod -m 666 /dev/random c 1 8 && mknod -m 666 /dev/urandom c 1 9 &&
mount -t tmpfs -o size=1m none /run/blkid 2>/dev/null || true
ls /dev | grep -q loop && exit 97
exec ganesha.nfsd "$@"' ganesha "$@"
`)...)
	c, o, f, written := openAndWrite(t, s.a, "move-no-blkid")
	f.set(s.moveTo("127.0.0.12"))
	readsThroughReclaimedOpen(t, c, o, written)
}

// readsThroughReclaimedOpen checks, after a move, that o reads back written and that c
// recovered once, reclaiming its open.
func readsThroughReclaimedOpen(t *testing.T, c *nfs4.Client, o *nfs4.Open, written []byte) {
	t.Helper()
	got, err := o.ReadAll(opCtx(t))
	if err != nil || !bytes.Equal(got, written) {
		t.Fatalf("reading through the open after the move: %d bytes, %v; want %d", len(got), err, len(written))
	}
	if rs := c.Recoveries(); len(rs) != 1 || rs[0].Reclaimed != 1 {
		t.Fatalf("recoveries = %+v; want one with the open reclaimed", rs)
	}
}

// testMoveStaleNodeBlkidCache serves a disk while the node's blkid cache says its device holds
// another filesystem, as it does for 2 s after the device's last disk was probed (by the
// ganesha that served it, say): blkid trusts such an entry without probing. A ganesha that read
// it would put the wrong UUID into its handles, and every handle would go stale on the next move.
// The agent gives ganesha a cache of its own, so the handle must survive.
func testMoveStaleNodeBlkidCache(t *testing.T) {
	d := newDisk(t)
	stop := poisonBlkidCache(t, d.Device)
	s := &served{t: t, disk: d}
	s.a = startAgent(t, agentConfig{host: "127.0.0.16", volumeDir: d.MountPoint})
	s.a.waitHealthz(http.StatusOK)
	c, o, f, written := openAndWrite(t, s.a, "move-stale-blkid")
	stop()
	f.set(s.moveTo("127.0.0.17"))
	readsThroughReclaimedOpen(t, c, o, written)
}

// nodeBlkidCache is where libblkid keeps its cache when BLKID_FILE does not say otherwise.
const nodeBlkidCache = "/run/blkid/blkid.tab"

// poisonBlkidCache keeps an entry in the node's blkid cache, freshly probed each time, saying
// device holds an ext4 filesystem with another UUID, until the returned stop is called (at the
// latest when the test ends), which takes the entry out again. The cache's other entries are kept.
func poisonBlkidCache(t *testing.T, device string) (stop func()) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(device, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(nodeBlkidCache), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(poison bool) {
		var keep []string
		if b, err := os.ReadFile(nodeBlkidCache); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				if l != "" && !strings.HasSuffix(l, ">"+device+"</device>") {
					keep = append(keep, l)
				}
			}
		}
		if now := time.Now(); poison {
			keep = append(keep, fmt.Sprintf(`<device DEVNO="%#04x" TIME="%d.%06d" UUID="0badcafe-0000-4000-8000-000000000001" BLOCK_SIZE="4096" TYPE="ext4">%s</device>`,
				st.Rdev, now.Unix(), now.Nanosecond()/1000, device))
		}
		tmp := nodeBlkidCache + ".sharewarden-test"
		if err := os.WriteFile(tmp, []byte(strings.Join(keep, "\n")+"\n"), 0o644); err == nil {
			_ = os.Rename(tmp, nodeBlkidCache)
		}
	}
	write(true)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-time.After(200 * time.Millisecond):
				write(true)
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(done); <-stopped; write(false) }) }
	t.Cleanup(stop)
	return stop
}

// graceLog is what ganesha logged about its grace period.
type graceLog struct {
	start, lifted time.Time
	duration      time.Duration
	lastCheck     string // the last "check grace:" before the lift
}

var (
	graceStart = regexp.MustCompile(`^(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d) .*NFS Server Now IN GRACE, duration (\d+)`)
	graceCheck = regexp.MustCompile(`check grace:(.*)$`)
	graceLift  = regexp.MustCompile(`^(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d) .*NFS Server Now NOT IN GRACE`)
)

// grace parses ganesha's log for its grace period.
func (a *agent) grace() graceLog {
	a.t.Helper()
	b, err := os.ReadFile(a.ganeshaLog)
	if err != nil {
		a.t.Fatal(err)
	}
	var g graceLog
	const layout = "02/01/2006 15:04:05"
	for _, l := range strings.Split(string(b), "\n") {
		if m := graceStart.FindStringSubmatch(l); m != nil {
			g.start, _ = time.Parse(layout, m[1])
			n, _ := strconv.Atoi(m[2])
			g.duration = time.Duration(n) * time.Second
		}
		if m := graceCheck.FindStringSubmatch(l); m != nil && g.lifted.IsZero() {
			g.lastCheck = m[1]
		}
		if m := graceLift.FindStringSubmatch(l); m != nil && g.lifted.IsZero() {
			g.lifted, _ = time.Parse(layout, m[1])
		}
	}
	if g.start.IsZero() || g.lifted.IsZero() {
		a.t.Fatalf("no grace start and lift in %s", a.ganeshaLog)
	}
	return g
}

// testMoveTwice moves the disk twice, with a recovering 4.1 client holding an open and a second
// client on record that, like the fencing tests' prober, redials (new verifier, as a rebooted
// client) until its OPEN passes grace. On each move every client on record must have sent
// RECLAIM_COMPLETE and ganesha must have lifted grace early because of it: the recovery
// records on the disk must not keep incarnations that can never reclaim.
func testMoveTwice(t *testing.T) {
	s := serveNewDisk(t, "127.0.0.13")
	f := &follower{}
	f.set(s.a)
	c := dialClient(t, nfs4.Config{Dial: f.dial, Owner: "move-twice", MinorVersion: 1, Recover: true, Logf: t.Logf})
	ctx := opCtx(t)
	export, err := c.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Open(ctx, export, "log.bin", nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	openUntilGraceEnds(t, s.a, "move-twice-probe")
	var off uint64
	for i, host := range []string{"127.0.0.14", "127.0.0.15"} {
		rec := []byte(fmt.Sprintf("record before move %d\n", i+1))
		if _, err := o.Write(ctx, off, rec, nfsv4.FILE_SYNC4); err != nil {
			t.Fatal(err)
		}
		off += uint64(len(rec))
		a := s.moveTo(host)
		f.set(a)
		if _, err := o.Write(ctx, off, []byte("after\n"), nfsv4.FILE_SYNC4); err != nil {
			t.Fatalf("move %d: WRITE through the held open: %v", i+1, err)
		}
		off += uint64(len("after\n"))
		openUntilGraceEnds(t, a, "move-twice-probe")
		g := a.grace()
		if g.lastCheck != "reclaim complete(2) clid count(2)" || !g.lifted.Before(g.start.Add(g.duration)) {
			t.Fatalf("move %d: grace %+v; want it lifted early, both clients on record having sent RECLAIM_COMPLETE", i+1, g)
		}
	}
	if o.Reclaims() != 2 {
		t.Fatalf("open reclaimed %d times over 2 moves", o.Reclaims())
	}
}

// openUntilGraceEnds dials a fresh client with owner on a, as a prober does, and retries its
// OPEN (each time with a new client, abandoning the last) until grace lets it through.
func openUntilGraceEnds(t *testing.T, a *agent, owner string) {
	t.Helper()
	ctx := opCtx(t)
	for {
		c := dialClient(t, nfs4.Config{Addr: net.JoinHostPort(a.host, strconv.Itoa(a.nfsPort)), Owner: owner, MinorVersion: 1})
		export, err := c.LookupPath(ctx, "/export")
		if err == nil {
			_, err = c.Open(ctx, export, owner, nfs4.OpenFlags{Create: true, Mode: 0o644})
		}
		if err == nil {
			return
		}
		c.Abandon()
		if !errors.Is(err, nfs4.ErrGrace) || ctx.Err() != nil {
			t.Fatalf("%s: OPEN: %v", owner, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
}
