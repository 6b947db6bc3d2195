package safety_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/fencing"
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
	return fixture.StartController(ctlCtx, opts), hit // stopped by its caller, or by crashing
}

// startController runs a controller that is stopped when the test ends, whatever happens to it
// before (a controller left running would fight the next test's over the servers).
func startController(t testing.TB, ctx context.Context, opts *provisioner.Options) *fixture.Controller {
	ctl := fixture.StartController(ctx, opts)
	t.Cleanup(func() { _ = ctl.Stop() })
	return ctl
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

// waitReleased waits until nothing the controller made for claims of ns is left.
func waitReleased(t testing.TB, ctx context.Context, c client.Client, ns string) {
	t.Helper()
	fixture.WaitFor(t, ctx, 90*time.Second, "everything of "+ns+" released", func() error {
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
			claim := fixture.Claim(ns, "shared")
			key := client.ObjectKeyFromObject(claim)
			releasing := i >= len(provisioning)
			var ctl *fixture.Controller
			var hit chan struct{}
			if releasing {
				ctl = startController(t, bg, controllerOptions())
			} else {
				ctl, hit = crashingController(bg, step, key)
				t.Cleanup(func() { _ = ctl.Stop() })
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
				crashed := ctl
				t.Cleanup(func() { _ = crashed.Stop() })
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

			ctl = startController(t, bg, controllerOptions())
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
			waitReleased(t, ctx, c, ns)
			if err := c.Get(ctx, client.ObjectKey{Name: provisioner.PVName(uid)}, &corev1.PersistentVolume{}); !apierrors.IsNotFound(err) {
				t.Errorf("PV of the deleted claim: %v", err)
			}
		})
	}
}

func controllerOptions() *provisioner.Options {
	o := fixture.ControllerOptions(plane)
	o.LeaderElect = false
	return o
}

func readyOnce(t *testing.T, ctx context.Context, c client.Client, key client.ObjectKey) {
	t.Helper()
	fixture.WaitFor(t, ctx, 90*time.Second, "volume "+key.String()+" Ready", func() error {
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

// TestCrashDuringFencing kills the controller right after each fencing step (lease released,
// fenced pod deleted) of a server that stopped renewing its lease, and
// restarts it: the failover completes with one server, off the fenced node, and the fenced
// node's attachment gone.
func TestCrashDuringFencing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := fixture.NewClient(plane)
	if err != nil {
		t.Fatal(err)
	}
	bg := context.WithoutCancel(ctx)
	// The attachment is removed by whichever of the Fencer and the volume's own reconcile gets
	// there first (provisioner detachFenced), so the Fencer's own detach step may never come: the
	// attachment's absence is checked after every crash instead.
	for i, step := range []fencing.Step{fencing.StepLeaseReleased, fencing.StepPodDeleted} {
		t.Run(string(step), func(t *testing.T) {
			ns := fmt.Sprintf("fence-crash-%d", i)
			if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
				t.Fatal(err)
			}
			claim := fixture.Claim(ns, "shared")
			key := client.ObjectKeyFromObject(claim)
			ctl := startController(t, bg, controllerOptions())
			if err := c.Create(ctx, claim); err != nil {
				t.Fatal(err)
			}
			readyOnce(t, ctx, c, key)
			if err := ctl.Stop(); err != nil {
				t.Fatal(err)
			}
			uid := string(claim.UID)
			old := &corev1.Pod{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(uid)}, old); err != nil {
				t.Fatal(err)
			}
			// Its backing volume is attached to its node, as the attach-detach controller attaches
			// a cloud disk.
			backing := &corev1.PersistentVolumeClaim{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: fixture.SystemNamespace, Name: swv1.ObjectName(uid)}, backing); err != nil {
				t.Fatal(err)
			}
			va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "va-" + uid}, Spec: storagev1.VolumeAttachmentSpec{
				Attacher: "disk.example.com", NodeName: old.Spec.NodeName, Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(backing.Spec.VolumeName)}}}
			if err := c.Create(ctx, va); err != nil {
				t.Fatal(err)
			}
			// The server took its lease and then stopped renewing it (no agent runs here).
			lease := fencing.LeaseFor(old, map[string]string{swv1.LabelClaimNamespace: ns, swv1.LabelClaimName: "shared", swv1.LabelClaimUID: uid, swv1.LabelManagedBy: swv1.ManagedByController}, 2*time.Second, time.Now())
			if err := c.Create(ctx, lease); err != nil {
				t.Fatal(err)
			}
			hit := make(chan struct{})
			var once sync.Once
			ctlCtx, crash := context.WithCancel(bg)
			opts := controllerOptions()
			opts.OnFenceStep = func(rctx context.Context, s fencing.Step, l types.NamespacedName) {
				if s != step || l.Name != lease.Name {
					return
				}
				once.Do(func() { crash(); close(hit) })
				<-rctx.Done()
			}
			ctl = startController(t, ctlCtx, opts)
			select {
			case <-hit:
			case <-time.After(2 * time.Minute):
				t.Fatalf("step %s never taken", step)
			}
			if err := ctl.Stop(); err != nil {
				t.Fatalf("crashed controller: %v", err)
			}
			cur := &corev1.Pod{}
			oldThere := c.Get(ctx, client.ObjectKeyFromObject(old), cur) == nil && cur.UID == old.UID
			if (step == fencing.StepLeaseReleased) != oldThere {
				t.Errorf("crash after %s: old pod there %v", step, oldThere)
			}

			startController(t, bg, controllerOptions()) // stopped when the test ends
			// Play the replacement's agent: it takes the released lease once it runs.
			fixture.WaitFor(t, ctx, 90*time.Second, "a replacement server off "+old.Spec.NodeName+", holding the lease", func() error {
				repl := &corev1.Pod{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(old), repl); err != nil {
					return err
				}
				if repl.UID == old.UID || repl.Spec.NodeName == "" || repl.Status.Phase != corev1.PodRunning {
					return fmt.Errorf("server %s on %q %s", repl.UID, repl.Spec.NodeName, repl.Status.Phase)
				}
				if repl.Spec.NodeName == old.Spec.NodeName {
					return fmt.Errorf("replacement on the fenced node %s", repl.Spec.NodeName)
				}
				l := &coordinationv1.Lease{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(lease), l); err != nil {
					return err
				}
				if ptr.Deref(l.Spec.HolderIdentity, "") == fencing.Identity(repl) {
					return nil
				}
				l.Spec.HolderIdentity = ptr.To(fencing.Identity(repl))
				l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
				l.Spec.LeaseDurationSeconds = ptr.To[int32](3600) // nobody renews it here
				delete(l.Annotations, swv1.AnnotationFencedHolder)
				delete(l.Annotations, swv1.AnnotationFencedNode)
				delete(l.Annotations, swv1.AnnotationFencedAt)
				if err := c.Update(ctx, l); err != nil {
					return err
				}
				return fmt.Errorf("lease just taken")
			})
			fixture.WaitFor(t, ctx, 60*time.Second, "failover complete", func() error {
				sv := &swv1.SharedVolume{}
				if err := c.Get(ctx, key, sv); err != nil {
					return err
				}
				if sv.Status.Phase != swv1.PhaseReady || sv.Status.FailoverCount != 1 || sv.Status.LastFailover == nil || sv.Status.LastFailover.EndTime == nil {
					return fmt.Errorf("phase %s failovers %d last %+v", sv.Status.Phase, sv.Status.FailoverCount, sv.Status.LastFailover)
				}
				return nil
			})
			vas := &storagev1.VolumeAttachmentList{}
			if err := c.List(ctx, vas); err != nil {
				t.Fatal(err)
			}
			for _, va := range vas.Items {
				if va.Spec.NodeName == old.Spec.NodeName && ptr.Deref(va.Spec.Source.PersistentVolumeName, "") == backing.Spec.VolumeName && va.DeletionTimestamp == nil {
					t.Errorf("the fenced node's attachment %s is still there", va.Name)
				}
			}
			if err := c.Delete(ctx, claim); err != nil {
				t.Fatal(err)
			}
			waitReleased(t, ctx, c, ns)
		})
	}
}
