package fencing_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/buildbarn/go-xdr/pkg/protocols/nfsv4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/nfs4"
	"github.com/sharewarden/sharewarden/test/serverrunner"
)

// recordSize is the size of one numbered record in the writer's log file.
const recordSize = 64

// record is the content of record i: its number, padded to recordSize.
func record(i int) []byte {
	b := bytes.Repeat([]byte{'.'}, recordSize)
	copy(b, fmt.Sprintf("rec-%06d", i))
	b[recordSize-1] = '\n'
	return b
}

// load keeps one volume busy, as an application on a kernel NFSv4.1 mount would: a writer
// holds one open file across every failover (its client reconnects, reclaims the open with
// CLAIM_PREVIOUS and carries on) and appends numbered records with FILE_SYNC, each counted only
// once acknowledged; a prober writes to every server it has known, recording what each
// accepted and when.
type load struct {
	t      testing.TB
	runner *serverrunner.Runner
	stop   chan struct{}
	wg     sync.WaitGroup
	writer *nfs4.Client
	open   *nfs4.Open

	mu      sync.Mutex
	acked   int
	writes  []accepted
	current serverrunner.Endpoint
	curUID  types.UID
	servers map[types.UID]serverrunner.Endpoint
	probes  map[types.UID]*prober
}

// prober is one probe client on one server; it is dropped and made again when it fails.
type prober struct {
	c *nfs4.Client
	o *nfs4.Open
}

const logFile = "log"

func startLoad(t testing.TB, runner *serverrunner.Runner, uid types.UID, ep serverrunner.Endpoint) *load {
	t.Helper()
	l := &load{t: t, runner: runner, stop: make(chan struct{}), current: ep, curUID: uid,
		servers: map[types.UID]serverrunner.Endpoint{uid: ep}, probes: map[types.UID]*prober{}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var err error
	l.writer, err = nfs4.Dial(ctx, nfs4.Config{Dial: l.dialCurrent, Owner: "fencing-writer", MinorVersion: 2, Recover: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	export, err := l.writer.LookupPath(ctx, "/export")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.writer.Close() })
	if l.open, err = l.writer.Open(ctx, export, logFile, nfs4.OpenFlags{Create: true, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	l.wg.Add(2)
	go l.write()
	go l.probe()
	return l
}

// dialCurrent connects to the volume's current server, as the Service IP would.
func (l *load) dialCurrent(ctx context.Context) (net.Conn, error) {
	l.mu.Lock()
	ep := l.current
	l.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", ep.Addr())
}

func (l *load) write() {
	defer l.wg.Done()
	for i := 0; ; {
		select {
		case <-l.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := l.open.Write(ctx, uint64(i*recordSize), record(i), nfsv4.FILE_SYNC4)
		cancel()
		if err == nil {
			l.mu.Lock()
			l.acked = i + 1
			l.mu.Unlock()
			i++
		} else {
			l.t.Logf("writer: record %d: %v", i, err)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (l *load) probe() {
	defer l.wg.Done()
	for n := 0; ; n++ {
		select {
		case <-l.stop:
			return
		case <-time.After(150 * time.Millisecond):
		}
		l.mu.Lock()
		eps := make(map[types.UID]serverrunner.Endpoint, len(l.servers))
		for k, v := range l.servers {
			eps[k] = v
		}
		l.mu.Unlock()
		// Every server at once: a dead one costs its probe a whole timeout (a refused
		// connection is retried), and probing in turn made the replacement wait one timeout per
		// dead server before its first probe, so (b) grew with every kill and grace, which
		// ends early only once the probe client on record has sent RECLAIM_COMPLETE, was held.
		var wg sync.WaitGroup
		for uid, ep := range eps {
			wg.Go(func() {
				sent := time.Now()
				if err := l.probeOnce(uid, ep, n); err == nil {
					l.mu.Lock()
					l.writes = append(l.writes, accepted{server: uid, sent: sent, done: time.Now()})
					l.mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
}

// probeOnce writes (FILE_SYNC) to server uid through its probe client, making one if needed.
// All probe clients share one owner, so each new server counts the probe among the clients on
// record that reclaimed (RECLAIM_COMPLETE) and can end grace early.
func (l *load) probeOnce(uid types.UID, ep serverrunner.Endpoint, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	l.mu.Lock()
	p := l.probes[uid]
	l.mu.Unlock()
	if p == nil {
		c, err := nfs4.Dial(ctx, nfs4.Config{Addr: ep.Addr(), Owner: "fencing-probe", MinorVersion: 2, CallTimeout: 2 * time.Second})
		if err != nil {
			return err
		}
		export, err := c.LookupPath(ctx, "/export")
		var o *nfs4.Open
		if err == nil {
			o, err = c.Open(ctx, export, "probe-"+string(uid[:8]), nfs4.OpenFlags{Create: true, Mode: 0o644})
		}
		if err != nil {
			c.Abandon()
			return err
		}
		p = &prober{c: c, o: o}
		l.mu.Lock()
		l.probes[uid] = p
		l.mu.Unlock()
	}
	if _, err := p.o.Write(ctx, uint64(n%1024)*8, []byte("probe..\n"), nfsv4.FILE_SYNC4); err != nil {
		p.c.Abandon()
		l.mu.Lock()
		delete(l.probes, uid)
		l.mu.Unlock()
		return err
	}
	return nil
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked
}

func (l *load) switchTo(uid types.UID, ep serverrunner.Endpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.servers[uid] = ep
	l.current, l.curUID = ep, uid
}

// firstAccepted is when server uid first acknowledged a probe.
func (l *load) firstAccepted(uid types.UID) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.writes {
		if w.server == uid {
			return w.done, true
		}
	}
	return time.Time{}, false
}

// overlap checks the invariant between two consecutive servers: every write the old one
// accepted finished before the first write the new one accepted was sent.
func (l *load) overlap(oldUID, newUID types.UID) (lastOld, firstNew time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, w := range l.writes {
		switch w.server {
		case oldUID:
			if w.done.After(lastOld) {
				lastOld = w.done
			}
		case newUID:
			if firstNew.IsZero() || w.sent.Before(firstNew) {
				firstNew = w.sent
			}
		}
	}
	return lastOld, firstNew, lastOld.IsZero() || firstNew.IsZero() || lastOld.Before(firstNew)
}

// doubleServing counts instants at which two different servers both accepted writes: pairs of
// accepted writes by different servers whose [sent, done] intervals are ordered the wrong way
// round for a handover (the earlier server's write finished after the later one's began).
func (l *load) doubleServing(order []types.UID) int {
	n := 0
	for i := 1; i < len(order); i++ {
		if _, _, ok := l.overlap(order[i-1], order[i]); !ok {
			n++
		}
	}
	return n
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	probes := l.probes
	l.probes = map[types.UID]*prober{}
	l.mu.Unlock()
	for _, p := range probes {
		p.c.Abandon()
	}
}

// lost reads the writer's log through the writer's own open (the one held across every
// failover) and lists the acknowledged records that are not in it.
func (l *load) lost(t testing.TB) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data, err := l.open.ReadAll(ctx)
	if err != nil {
		t.Fatalf("reading the log back: %v", err)
	}
	var out []int
	for i := range l.ackedCount() {
		if end := (i + 1) * recordSize; end > len(data) || !bytes.Equal(data[i*recordSize:end], record(i)) {
			out = append(out, i)
		}
	}
	return out
}

// failover is one node kill, as seen from outside.
type failover struct {
	deadNode            string
	old, replacement    *corev1.Pod
	placed, acknowledge time.Duration
}

// killServerNode partitions and kills the node of the volume's current server, and waits
// until a replacement elsewhere has acknowledged a write.
func killServerNode(t testing.TB, ctx context.Context, c client.Client, l *load, podKey client.ObjectKey) failover {
	t.Helper()
	old := &corev1.Pod{}
	if err := c.Get(ctx, podKey, old); err != nil {
		t.Fatal(err)
	}
	f := failover{deadNode: old.Spec.NodeName, old: old}
	t0 := time.Now()
	l.runner.PartitionNode(f.deadNode)
	if err := plane.FailNode(f.deadNode); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, ctx, 90*time.Second, "replacement server running elsewhere", func() error {
		p := &corev1.Pod{}
		if err := c.Get(ctx, podKey, p); err != nil {
			return err
		}
		if p.UID == old.UID || p.Spec.NodeName == "" {
			return fmt.Errorf("no replacement yet")
		}
		ep, ok := l.runner.EndpointByUID(p.UID)
		if !ok {
			return fmt.Errorf("replacement on %s has no agent yet", p.Spec.NodeName)
		}
		f.replacement = p
		l.switchTo(p.UID, ep)
		return nil
	})
	f.placed = time.Since(t0)
	if f.replacement.Spec.NodeName == f.deadNode {
		t.Fatalf("replacement placed on the dead node %s", f.deadNode)
	}
	fixture.WaitFor(t, ctx, 90*time.Second, "a write acknowledged by the replacement", func() error {
		if at, ok := l.firstAccepted(f.replacement.UID); ok {
			f.acknowledge = at.Sub(t0)
			return nil
		}
		return fmt.Errorf("none yet")
	})
	return f
}

// restoreNode brings a killed node back, as its kubelet would return.
func restoreNode(t testing.TB, ctx context.Context, l *load, node string) {
	t.Helper()
	if err := plane.RestoreNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	if err := l.runner.HealNode(ctx, node); err != nil {
		t.Fatal(err)
	}
}
