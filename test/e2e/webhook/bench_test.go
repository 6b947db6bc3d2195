package webhook_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/webhook"
)

// BenchmarkClaimCreate times claim creation through the real apiserver, one claim at a time,
// in one run: 500 RWX and 500 RWO claims with the webhook registered (RWX rewritten, RWO never
// sent thanks to the matchCondition), and as many with no webhook registered at all. Ten
// periods alternate between the two set-ups, each creating 100 RWO then 100 RWX claims, so
// that a drift (etcd growing, a busy machine) hits both alike. Run with:
//
//	go test ./test/e2e/webhook -run '^$' -bench ClaimCreate -benchtime 1x -v
func BenchmarkClaimCreate(b *testing.B) {
	const perKind, block = 500, 100
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cfg := plane.RESTConfig()
	cfg.QPS = -1 // no client-side throttling: time the server, not the rate limiter
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := hook.Register(context.Background()); err != nil {
			b.Errorf("re-registering the webhook: %v", err)
		}
	}()

	for range b.N {
		ns := fixture.Namespace(b, ctx, plane, "")
		claims := cs.CoreV1().PersistentVolumeClaims(ns)
		create := func(name string, m corev1.PersistentVolumeAccessMode) (time.Duration, *corev1.PersistentVolumeClaim) {
			c := fixture.Claim("", name, fixture.OnClass(fast), fixture.Modes(m))
			t0 := time.Now()
			got, err := claims.Create(ctx, c, metav1.CreateOptions{})
			d := time.Since(t0)
			if err != nil {
				b.Fatalf("creating %s: %v", name, err)
			}
			return d, got
		}
		for i := range 50 { // warm connections and caches; not measured
			create(fmt.Sprintf("warm-%d", i), corev1.ReadWriteOnce)
		}
		samples := map[string][]time.Duration{}
		sentBefore, err := hook.Requests(ctx, webhook.ResourceClaims)
		if err != nil {
			b.Fatal(err)
		}
		for blk := 0; blk < 2*perKind/block; blk++ {
			registered := blk%2 == 0
			if registered {
				err = hook.Register(ctx)
			} else {
				err = hook.Unregister(ctx)
			}
			if err != nil {
				b.Fatal(err)
			}
			setup := "no-webhook"
			if registered {
				setup = "webhook"
			}
			// RWO first: the RWX claims' aftermath (informer events, the PV controller's updates,
			// which reach the webhook when registered) then weighs on the RWO creates of the
			// other set-up's period, not on this one's.
			for _, m := range []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany} {
				kind := "rwx"
				if m == corev1.ReadWriteOnce {
					kind = "rwo"
				}
				for i := range block {
					d, got := create(fmt.Sprintf("%s-%s-%d-%d", setup, kind, blk, i), m)
					samples[kind+"/"+setup] = append(samples[kind+"/"+setup], d)
					rewritten := ptr.Deref(got.Spec.StorageClassName, "") != fast
					if rewritten != (registered && kind == "rwx") {
						b.Fatalf("%s: rewritten=%v with %s", got.Name, rewritten, setup)
					}
				}
			}
		}
		sentAfter, err := hook.Requests(ctx, webhook.ResourceClaims)
		if err != nil {
			b.Fatal(err)
		}
		if sent := sentAfter - sentBefore; sent < perKind {
			b.Errorf("webhook saw %v claim requests, want at least the %d RWX creates", sent, perKind)
		}

		b.Logf("%-16s %6s %9s %9s %9s", "claims", "n", "median", "p99", "mean")
		for _, k := range []string{"rwx/no-webhook", "rwx/webhook", "rwo/no-webhook", "rwo/webhook"} {
			s := samples[k]
			med, p99, mean := stats(s)
			b.Logf("%-16s %6d %9s %9s %9s", k, len(s), med, p99, mean)
			b.ReportMetric(ms(med), k+"-median-ms")
			b.ReportMetric(ms(p99), k+"-p99-ms")
		}
		rwxNo, _, _ := stats(samples["rwx/no-webhook"])
		rwxHook, _, _ := stats(samples["rwx/webhook"])
		rwoNo, _, _ := stats(samples["rwo/no-webhook"])
		rwoHook, _, _ := stats(samples["rwo/webhook"])
		b.ReportMetric(ms(rwxHook-rwxNo), "rwx-overhead-median-ms")
		b.ReportMetric(float64(rwoHook)/float64(rwoNo), "rwo-median-ratio")
		b.Logf("RWX overhead (median): %s; RWO median ratio registered/none: %.3f", rwxHook-rwxNo, float64(rwoHook)/float64(rwoNo))
	}
}

func stats(s []time.Duration) (median, p99, mean time.Duration) {
	s = slices.Clone(s)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	idx := int(math.Ceil(0.99*float64(len(s)))) - 1
	return s[len(s)/2], s[idx], sum / time.Duration(len(s))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
