package extender_test

import (
	"context"
	"fmt"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// TestPluginBuildPlaces runs kube-scheduler built with ShareWarden's plugin (hack/tools/scheduler)
// with the shipped deploy/scheduler/plugin-scheduler-config.yaml beside the suite's scheduler,
// and checks it places as the extender does: a server on the node holding its data, consumers in
// their server's zone and never on a node fenced for their volume. The volumes' state is made
// before the scheduler starts, since nothing outside the scheduler shows when its plugin's
// caches have caught up; the plugin waits for them to sync before the scheduler schedules.
func TestPluginBuildPlaces(t *testing.T) {
	// Built first, outside the case's deadline: on a cold build cache it compiles kube-scheduler.
	bin, err := cluster.BuildScheduler(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	c := fixture.Client(t, plane)
	ns := namespace(t, ctx, "ext-plugin")
	data := newVolume(t, ctx, c, ns, "served", "a2", nil)
	claim := boundRWXClaim(t, ctx, c, ns, "data")
	createSharedVolume(t, ctx, c, ns, "data", string(claim.UID), func(s *swv1.SharedVolumeStatus) {
		s.Server.NodeName = "b1"
		s.FencedNodes = []string{"b2"}
	})

	if err := grantSchedulerSharedVolumes(ctx, plane); err != nil {
		t.Fatal(err)
	}
	conf, err := shippedFile("plugin-scheduler-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plane.AddSchedulerBin(ctx, "kube-scheduler-plugin", bin, conf); err != nil {
		t.Fatal(err)
	}

	server := serverPod(t, data)
	server.Spec.SchedulerName = "sharewarden-server-scheduler"
	if got := schedule(t, ctx, c, server); got != "a2" {
		t.Errorf("server (data on a2) landed on %s", got)
	}
	for i := range 4 {
		p := consumerPod(t, ns, fmt.Sprintf("web-%d", i), claim)
		p.Spec.SchedulerName = "sharewarden-scheduler"
		if got := schedule(t, ctx, c, p); zoneOf(got) != "zone-b" || got == "b2" {
			t.Errorf("consumer on %s: want the server's zone-b, never b2 (fenced for the volume)", got)
		}
	}
}

// grantSchedulerSharedVolumes lets kube-scheduler's identity read SharedVolumes, which its own
// role does not and the plugin's informers need (a deployment grants it the extender's role).
// It is left in place: the rights are read-only and the plane is the suite's.
func grantSchedulerSharedVolumes(ctx context.Context, c *cluster.Cluster) error {
	cs := c.Client()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "e2e-scheduler-sharedvolumes"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{swv1.GroupName}, Resources: []string{"sharedvolumes"}, Verbs: []string{"get", "list", "watch"},
	}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "system:kube-scheduler"}}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s: %w", role.Name, err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s: %w", binding.Name, err)
	}
	return nil
}
