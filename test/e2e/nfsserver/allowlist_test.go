package nfsserver_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sharewarden/sharewarden/nfsserver"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/nfs4"
)

// TestAllowlistReload runs the agent with the client allowlist and real nfs-ganesha, and changes
// its list as the controller would: clients stand for nodes by dialling from their own loopback
// address. ganesha reloads its exports on SIGHUP without a restart: an address added is served,
// one never listed or removed is refused (a removed one on the open it holds, too), and a client
// that stays allowed writes on through every change without one error.
func TestAllowlistReload(t *testing.T) {
	dir := t.TempDir()
	o := nfsserver.DefaultOptions()
	o.VolumeID = volumeID
	o.VolumeDir = filepath.Join(dir, "vol")
	o.RuntimeDir = filepath.Join(dir, "run")
	o.GaneshaLog = filepath.Join(dir, "ganesha.log")
	o.HTTPAddress = "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))
	o.ProbeTimeout = time.Second
	o.ClientAllowlist = true
	const host = "127.0.4.1"
	o.NFSAddress = net.JoinHostPort(host, strconv.Itoa(freePort(t, host)))
	if err := os.MkdirAll(o.VolumeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := nfsserver.New(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Stdout, a.Stderr = io.Discard, io.Discard
	const nodeA, nodeB, nodeC = "127.0.0.31", "127.0.0.32", "127.0.0.33"
	set := func(ips ...string) {
		var list []netip.Addr
		for _, ip := range ips {
			list = append(list, netip.MustParseAddr(ip))
		}
		a.SetAllowedClients(list)
	}
	set(nodeA)
	ctx, cancel := context.WithCancel(log.IntoContext(context.Background(), logr.Discard()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(o.GaneshaLog); err == nil {
				t.Logf("ganesha log:\n%s", b)
			}
		}
	})

	dial := func(ctx context.Context, ip, owner string) (*nfs4.Client, error) {
		return nfs4.Dial(ctx, nfs4.Config{Owner: owner, MinorVersion: 1, CallTimeout: 3 * time.Second, OpTimeout: 10 * time.Second,
			Dial: nfs4.DialFrom(ip, o.NFSAddress)})
	}
	mount := func(ip, owner string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := dial(ctx, ip, owner)
		if err != nil {
			return err
		}
		defer c.Abandon()
		export, err := c.LookupPath(ctx, "/export")
		if err != nil {
			return err
		}
		f, err := c.Open(ctx, export, owner, nfs4.OpenFlags{Create: true, Mode: 0o644})
		if err != nil {
			return err
		}
		_, err = f.Write(ctx, 0, []byte(owner), nfsv4.FILE_SYNC4)
		return err
	}
	refused := nfs4.Refused
	eventually := func(what string, cond func() error) {
		t.Helper()
		fixture.WaitFor(t, context.Background(), 30*time.Second, what, cond)
	}
	served := func(what, ip string) { t.Helper(); eventually(what, func() error { return mount(ip, what) }) }
	turnedAway := func(what, ip string) {
		t.Helper()
		eventually(what, func() error {
			if err := mount(ip, what); !refused(err) {
				return fmt.Errorf("not refused: %v", err)
			}
			return nil
		})
	}

	served("node A, listed at start, served", nodeA)
	turnedAway("node B, never listed, refused", nodeB)

	// A writer on node A, throughout.
	wc, err := dial(ctx, nodeA, "writer")
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Abandon()
	export, err := wc.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	wf, err := wc.Open(ctx, export, "steady", nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var writes int
	var werr error
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := uint64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := wf.Write(context.Background(), i*4, []byte("rec\n"), nfsv4.FILE_SYNC4)
			mu.Lock()
			if err != nil {
				werr = fmt.Errorf("write %d: %w", i, err)
				mu.Unlock()
				return
			}
			writes++
			mu.Unlock()
		}
	}()
	progress := func(what string) {
		t.Helper()
		mu.Lock()
		from := writes
		mu.Unlock()
		eventually(what, func() error {
			mu.Lock()
			defer mu.Unlock()
			if werr != nil {
				t.Fatalf("%s: the allowed writer failed: %v", what, werr)
			}
			if writes < from+20 {
				return fmt.Errorf("%d writes, %d before", writes, from)
			}
			return nil
		})
	}
	progress("writer on node A")

	set(nodeA, nodeB)
	served("node B served once listed", nodeB)
	progress("writer on node A after node B was added")

	// Node B mounts and holds an open; then it is removed.
	bc, err := dial(ctx, nodeB, "held-b")
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Abandon()
	bExport, err := bc.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	bf, err := bc.Open(ctx, bExport, "held-b", nfs4.OpenFlags{Create: true, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	set(nodeA)
	turnedAway("node B refused once removed", nodeB)
	eventually("node B's open refused once removed", func() error {
		if _, err := bf.Write(ctx, 0, []byte("after"), nfsv4.FILE_SYNC4); !refused(err) {
			return fmt.Errorf("not refused: %v", err)
		}
		return nil
	})
	progress("writer on node A after node B was removed")

	// Many changes in a row, node A always listed.
	for i := range 10 {
		if i%2 == 0 {
			set(nodeA, nodeC)
		} else {
			set(nodeA)
		}
		time.Sleep(300 * time.Millisecond)
	}
	set(nodeA, nodeC)
	served("node C served after the changes", nodeC)
	progress("writer on node A after ten more changes")
	close(stop)
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	if werr != nil {
		t.Fatalf("the allowed writer was interrupted by an allowlist change: %v", werr)
	}
	t.Logf("node A's writer: %d FILE_SYNC writes acknowledged through 13 allowlist changes, none failed", writes)
}
