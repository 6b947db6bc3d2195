package safety_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// crashingController runs a controller that dies right after the write of step for claim: it
// stops its manager and lets no further write of that reconcile through, as a killed process
// would. hit is closed when it happened.
func crashingController(ctx context.Context, step provisioner.Step, claim types.NamespacedName) (ctl *fixture.Controller, hit chan struct{}) {
	hit = make(chan struct{})
	var once sync.Once
	ctlCtx, crash := context.WithCancel(ctx)
	opts := fixture.ControllerOptions(plane)
	opts.LeaderElect = false
	opts.OnStep = func(rctx context.Context, s provisioner.Step, key types.NamespacedName) {
		if s != step || key != claim {
			return
		}
		once.Do(func() {
			crash()
			close(hit)
		})
		<-rctx.Done() // every later write of this reconcile fails with the cancelled context
	}
	return fixture.StartController(ctlCtx, opts), hit
}

// objectsOf lists what the controller made for claims of namespace ns, by kind.
func objectsOf(ctx context.Context, c client.Client, ns string) (map[string][]string, error) {
	sel := client.MatchingLabels{swv1.LabelClaimNamespace: ns, swv1.LabelManagedBy: swv1.ManagedByController}
	out := map[string][]string{}
	lists := map[string]client.ObjectList{
		"backing claims": &corev1.PersistentVolumeClaimList{}, "services": &corev1.ServiceList{},
		"server pods": &corev1.PodList{}, "PVs": &corev1.PersistentVolumeList{},
	}
	for kind, l := range lists {
		opts := []client.ListOption{sel}
		if kind != "PVs" {
			opts = append(opts, client.InNamespace(fixture.SystemNamespace))
		}
		if err := c.List(ctx, l, opts...); err != nil {
			return nil, err
		}
		items, err := metaItems(l)
		if err != nil {
			return nil, err
		}
		for _, o := range items {
			out[kind] = append(out[kind], o.GetLabels()[swv1.LabelClaimUID])
		}
	}
	svs := &swv1.SharedVolumeList{}
	if err := c.List(ctx, svs, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	for _, sv := range svs.Items {
		out["shared volumes"] = append(out["shared volumes"], sv.Spec.ClaimUID)
	}
	leases := &coordinationv1.LeaseList{}
	if err := c.List(ctx, leases, client.InNamespace(fixture.SystemNamespace), sel); err != nil {
		return nil, err
	}
	for _, l := range leases.Items {
		out["leases"] = append(out["leases"], l.Labels[swv1.LabelClaimUID])
	}
	return out, nil
}

func metaItems(l client.ObjectList) ([]metav1.Object, error) {
	var out []metav1.Object
	switch l := l.(type) {
	case *corev1.PersistentVolumeClaimList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.ServiceList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.PodList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	case *corev1.PersistentVolumeList:
		for i := range l.Items {
			out = append(out, &l.Items[i])
		}
	default:
		return nil, fmt.Errorf("unexpected list %T", l)
	}
	return out, nil
}

// TestCrashAtEveryStep kills the controller right after each provisioning step (SharedVolume,
// backing claim, Service, server pod, PV) and each release step, and restarts it: every time
// the job is finished with exactly one of each object, none orphaned, none duplicated.
func TestCrashAtEveryStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := fixture.NewClient(plane)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.WithoutCancel(ctx)
	provisioning := []provisioner.Step{provisioner.StepSharedVolume, provisioner.StepBackingClaim, provisioner.StepService, provisioner.StepServerPod, provisioner.StepPV}
	release := []provisioner.Step{provisioner.StepReleaseBegin, provisioner.StepServerGone}
	for i, step := range append(provisioning, release...) {
		t.Run(string(step), func(t *testing.T) {
			ns := fmt.Sprintf("crash-%d", i)
			if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
				t.Fatal(err)
			}
			claim := rwxClaim(ns, "shared")
			key := client.ObjectKeyFromObject(claim)
			releasing := i >= len(provisioning)
			var ctl *fixture.Controller
			var hit chan struct{}
			if releasing {
				ctl = fixture.StartController(bg, controllerOptions())
			} else {
				ctl, hit = crashingController(bg, step, key)
			}
			if err := c.Create(ctx, claim); err != nil {
				t.Fatal(err)
			}
			uid := string(claim.UID)
			if releasing {
				readyOnce(t, ctx, c, key)
				if err := ctl.Stop(); err != nil {
					t.Fatal(err)
				}
				ctl, hit = crashingController(bg, step, key)
				if err := c.Delete(ctx, claim); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-hit:
			case <-ctx.Done():
				t.Fatalf("step %s never taken", step)
			}
			if err := ctl.Stop(); err != nil {
				t.Fatalf("crashed controller: %v", err)
			}
			before, err := objectsOf(ctx, c, ns)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("left by the crash after %s: %v", step, before)
			// The crash really came between two steps: the next one's object is not there.
			if next, ok := map[provisioner.Step]string{
				provisioner.StepSharedVolume: "backing claims", provisioner.StepBackingClaim: "services",
				provisioner.StepService: "server pods", provisioner.StepServerPod: "PVs",
			}[step]; ok && len(before[next]) > 0 {
				t.Errorf("crash after %s, yet %s exist: %v", step, next, before[next])
			}
			if step == provisioner.StepServerGone && len(before["backing claims"]) != 1 {
				t.Errorf("crash after %s, yet the backing claim is gone: %v", step, before)
			}

			ctl = fixture.StartController(bg, controllerOptions())
			defer func() {
				if err := ctl.Stop(); err != nil {
					t.Errorf("controller: %v", err)
				}
			}()
			if !releasing {
				readyOnce(t, ctx, c, key)
				got, err := objectsOf(ctx, c, ns)
				if err != nil {
					t.Fatal(err)
				}
				for _, kind := range []string{"backing claims", "services", "server pods", "PVs", "shared volumes"} {
					if len(got[kind]) != 1 || got[kind][0] != uid {
						t.Errorf("%s after the restart: %v, want exactly one, of %s", kind, got[kind], uid)
					}
				}
				if err := c.Delete(ctx, claim); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, ctx, 90*time.Second, "everything released", func() error {
				got, err := objectsOf(ctx, c, ns)
				if err != nil {
					return err
				}
				for kind, uids := range got {
					if len(uids) > 0 {
						return fmt.Errorf("%s left: %v", kind, uids)
					}
				}
				return nil
			})
			if err := c.Get(ctx, client.ObjectKey{Name: provisioner.PVName(uid)}, &corev1.PersistentVolume{}); !apierrors.IsNotFound(err) {
				t.Errorf("PV of the deleted claim: %v", err)
			}
		})
	}
}

func controllerOptions() provisioner.Options {
	o := fixture.ControllerOptions(plane)
	o.LeaderElect = false
	return o
}

func readyOnce(t *testing.T, ctx context.Context, c client.Client, key client.ObjectKey) {
	t.Helper()
	waitFor(t, ctx, 90*time.Second, "volume "+key.String()+" Ready", func() error {
		sv := &swv1.SharedVolume{}
		if err := c.Get(ctx, key, sv); err != nil {
			return err
		}
		claim := &corev1.PersistentVolumeClaim{}
		if err := c.Get(ctx, key, claim); err != nil {
			return err
		}
		if sv.Status.Phase != swv1.PhaseReady || claim.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %s, claim %s", sv.Status.Phase, claim.Status.Phase)
		}
		return nil
	})
}
