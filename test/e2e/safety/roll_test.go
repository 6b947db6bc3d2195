package safety_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// rollOnce restarts the controller with other server arguments and waits until the volume's
// server was replaced, on the node it ran on, and serves again; it returns the longest pause
// the holder saw.
func rollOnce(t testing.TB, ctx context.Context, s *stack, h *holder, key client.ObjectKey, uid, arg string) time.Duration {
	t.Helper()
	old := &corev1.Pod{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(uid)}, old); err != nil {
		t.Fatal(err)
	}
	if err := s.ctl.Stop(); err != nil {
		t.Fatal(err)
	}
	s.opts.ServerExtraArgs = []string{arg}
	start := time.Now()
	s.ctl = fixture.StartController(context.WithoutCancel(ctx), s.opts)
	fixture.WaitFor(t, ctx, 2*time.Minute, "the server rolled on its node", func() error {
		p := &corev1.Pod{}
		if err := s.c.Get(ctx, client.ObjectKeyFromObject(old), p); err != nil {
			return err
		}
		if p.UID == old.UID || p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("server %s %s", p.UID, p.Status.Phase)
		}
		if p.Spec.NodeName != old.Spec.NodeName {
			t.Fatalf("rolled from %s to %s: the RWO disk is attached on %s", old.Spec.NodeName, p.Spec.NodeName, old.Spec.NodeName)
		}
		if p.Annotations[provisioner.AnnotationServerSpecHash] == old.Annotations[provisioner.AnnotationServerSpecHash] {
			t.Fatalf("new server with the old spec hash %s", old.Annotations[provisioner.AnnotationServerSpecHash])
		}
		return nil
	})
	n := h.acked()
	fixture.WaitFor(t, ctx, 90*time.Second, "the held open writing on the rolled server", func() error {
		if h.acked() < n+5 {
			return fmt.Errorf("%d records since the roll", h.acked()-n)
		}
		return nil
	})
	s.waitReady(t, ctx, key)
	return h.longestPause(start)
}

// heldVolume is a Ready volume in namespace ns under its own controller and runner, with a
// holder writing through its Service address.
func heldVolume(t testing.TB, ctx context.Context, ns string) (*stack, *corev1.PersistentVolumeClaim, *holder) {
	t.Helper()
	s := newStack(t, ctx, ns)
	claim := s.createClaim(t, ctx, fixture.Claim(ns, "shared"))
	sv := s.waitReady(t, ctx, client.ObjectKeyFromObject(claim))
	addr, err := s.runner.ServiceAddress(sv.Status.ServiceIP)
	if err != nil {
		t.Fatal(err)
	}
	return s, claim, startHolder(t, ctx, addr)
}

// TestPlannedRestart changes the servers' arguments (as an upgrade of the server image does):
// the volume's server is rolled with a clean hand-off on the node its disk is attached to, and an
// application holding an open file through it sees a pause and no error, its open reclaimed and
// every record kept.
func TestPlannedRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	s, claim, h := heldVolume(t, ctx, "roll")
	key := client.ObjectKeyFromObject(claim)
	fixture.WaitFor(t, ctx, time.Minute, "the held open writing", func() error {
		if h.acked() < 20 {
			return fmt.Errorf("%d records", h.acked())
		}
		return nil
	})
	pause := rollOnce(t, ctx, s, h, key, string(claim.UID), "--probe-timeout=2s")
	h.close()
	h.check(t, ctx)
	if h.open.Reclaims() < 1 {
		t.Errorf("the open was not reclaimed on the new server (%d reclaims)", h.open.Reclaims())
	}
	after := &swv1.SharedVolume{}
	if err := s.c.Get(ctx, key, after); err != nil {
		t.Fatal(err)
	}
	if after.Status.FailoverCount != 0 {
		t.Errorf("a planned restart counted as %d failovers", after.Status.FailoverCount)
	}
	t.Logf("the application paused for %s at most during the roll", pause.Round(time.Millisecond))
}

// BenchmarkPlannedRestart rolls one volume's server ten times and reports the application's
// longest pause per roll (median and max):
//
//	go test ./test/e2e/safety -run '^$' -bench PlannedRestart -benchtime 1x
func BenchmarkPlannedRestart(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	s, claim, h := heldVolume(b, ctx, "roll-bench")
	key := client.ObjectKeyFromObject(claim)
	var pauses []time.Duration
	for n := range b.N * 10 {
		pauses = append(pauses, rollOnce(b, ctx, s, h, key, string(claim.UID), fmt.Sprintf("--probe-timeout=%ds", 2+n%2)))
	}
	h.close()
	h.check(b, ctx)
	sort.Slice(pauses, func(i, j int) bool { return pauses[i] < pauses[j] })
	b.ReportMetric(pauses[len(pauses)/2].Seconds(), "median-pause-s")
	b.ReportMetric(pauses[len(pauses)-1].Seconds(), "max-pause-s")
}

// createClaim creates claim and, when the test ends, deletes it and waits until its volume is
// released, so that no server of this test is left for the next test's controller and runner.
func (s *stack) createClaim(t testing.TB, ctx context.Context, claim *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	t.Helper()
	if err := s.c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := s.c.Delete(ctx, claim); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting claim: %v", err)
			return
		}
		fixture.WaitFor(t, ctx, 90*time.Second, "volume released", func() error {
			sv := &swv1.SharedVolume{}
			if err := s.c.Get(ctx, client.ObjectKeyFromObject(claim), sv); !apierrors.IsNotFound(err) {
				return fmt.Errorf("SharedVolume still there (%v)", err)
			}
			return nil
		})
	})
	return claim
}
