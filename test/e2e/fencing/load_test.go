package fencing_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sharewarden/sharewarden/test/serverrunner"
)

// load keeps one volume busy: a writer appends numbered records to whichever server serves,
// each counted only once acknowledged, and a prober writes to every server it has known,
// recording what each accepted and when.
type load struct {
	runner *serverrunner.Runner
	src    string
	stop   chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	acked   []string
	writes  []accepted
	current serverrunner.Endpoint
	curUID  types.UID
	servers map[types.UID]serverrunner.Endpoint
}

func startLoad(t testing.TB, runner *serverrunner.Runner, uid types.UID, ep serverrunner.Endpoint) *load {
	l := &load{runner: runner, src: t.TempDir(), stop: make(chan struct{}), current: ep, curUID: uid,
		servers: map[types.UID]serverrunner.Endpoint{uid: ep}}
	l.wg.Add(2)
	go l.write()
	go l.probe()
	return l
}

func (l *load) write() {
	defer l.wg.Done()
	for i := 0; ; {
		select {
		case <-l.stop:
			return
		default:
		}
		l.mu.Lock()
		ep := l.current
		l.mu.Unlock()
		name := fmt.Sprintf("rec-%06d", i)
		if err := nfsPut(ep, l.src, name, name+"\n"); err == nil {
			l.mu.Lock()
			l.acked = append(l.acked, name)
			l.mu.Unlock()
			i++
		} else {
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
		for uid, ep := range eps {
			sent := time.Now()
			if err := nfsPut(ep, l.src, fmt.Sprintf("probe-%s-%d", uid[:8], n), "p\n"); err == nil {
				l.mu.Lock()
				l.writes = append(l.writes, accepted{server: uid, sent: sent, done: time.Now()})
				l.mu.Unlock()
			}
		}
	}
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
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
}

// lost lists acknowledged records missing from the export.
func (l *load) lost(names []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, a := range l.acked {
		if !slices.Contains(names, a) {
			out = append(out, a)
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
	waitFor(t, ctx, 90*time.Second, "replacement server running elsewhere", func() error {
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
	waitFor(t, ctx, 90*time.Second, "a write acknowledged by the replacement", func() error {
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
