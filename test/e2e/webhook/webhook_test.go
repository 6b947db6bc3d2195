package webhook_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/webhookrun"
	"github.com/sharewarden/sharewarden/webhook"
)

// Runs first, before any shared claim exists whose updates (by the PV controller) would also
// reach the webhook: an RWO claim never leaves the apiserver, thanks to the CEL matchCondition.
func TestRWOClaimNeverSentToWebhook(t *testing.T) {
	ctx := testContext(t)
	ns := fixture.Namespace(t, ctx, plane, "")
	before, err := hook.Requests(ctx, webhook.ResourceClaims)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteOncePod} {
		c := fixture.Claim("", "rwo-"+string(rune('a'+i)), fixture.OnClass(fast), fixture.Modes(m))
		if _, err := plane.Client().CoreV1().PersistentVolumeClaims(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		got, err := plane.Client().CoreV1().PersistentVolumeClaims(ns).Get(ctx, c.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ptr.Deref(got.Spec.StorageClassName, "") != fast || got.Annotations[v1alpha1.AnnotationBackingStorageClass] != "" {
			t.Errorf("%s claim touched: class %v annotations %v", m, ptr.Deref(got.Spec.StorageClassName, ""), got.Annotations)
		}
	}
	after, err := hook.Requests(ctx, webhook.ResourceClaims)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("webhook saw %v claim requests for RWO claims, want none", after-before)
	}

	// The counter does count: one shared claim is one more request.
	if _, err := plane.Client().CoreV1().PersistentVolumeClaims(ns).Create(ctx, fixture.Claim("", "shared", fixture.OnClass(fast)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if n, err := hook.Requests(ctx, webhook.ResourceClaims); err != nil || n < after+1 {
		t.Errorf("counter after a shared claim: %v (err %v), want at least %v", n, err, after+1)
	}
}

func TestSharedClaimsRewritten(t *testing.T) {
	ctx := testContext(t)
	ns := fixture.Namespace(t, ctx, plane, "")
	claims := plane.Client().CoreV1().PersistentVolumeClaims(ns)
	cases := []struct {
		claim   *corev1.PersistentVolumeClaim
		backing string
	}{
		{fixture.Claim("", "rwx", fixture.OnClass(fast)), fast},
		{fixture.Claim("", "rox", fixture.OnClass(slow), fixture.Modes(corev1.ReadOnlyMany)), slow},
		{fixture.Claim("", "direct", fixture.OnClass(managed)), fast},
		{fixture.Claim("", "direct-slow", fixture.OnClass(managed), fixture.Annotated(v1alpha1.AnnotationBackingStorageClass, slow)), slow},
	}
	for _, tc := range cases {
		if _, err := claims.Create(ctx, tc.claim, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", tc.claim.Name, err)
		}
		got, err := claims.Get(ctx, tc.claim.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ptr.Deref(got.Spec.StorageClassName, "") != managed {
			t.Errorf("%s: storageClassName %q, want %q", got.Name, ptr.Deref(got.Spec.StorageClassName, ""), managed)
		}
		if b := got.Annotations[v1alpha1.AnnotationBackingStorageClass]; b != tc.backing {
			t.Errorf("%s: backing class %q, want %q", got.Name, b, tc.backing)
		}
	}
	// A class not opted in is left alone.
	if _, err := claims.Create(ctx, fixture.Claim("", "other", fixture.OnClass(plain)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := claims.Get(ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(got.Spec.StorageClassName, "") != plain {
		t.Errorf("claim on a class not opted in rewritten to %q", ptr.Deref(got.Spec.StorageClassName, ""))
	}
}

func TestRefusedClaims(t *testing.T) {
	ctx := testContext(t)
	ns := fixture.Namespace(t, ctx, plane, "")
	claims := plane.Client().CoreV1().PersistentVolumeClaims(ns)
	if _, err := claims.Create(ctx, fixture.Claim("", "slow-src", fixture.OnClass(slow)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	block := func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock) }
	cloneOf := func(name string) fixture.ClaimOption {
		return func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: name}
		}
	}
	cases := []struct {
		claim *corev1.PersistentVolumeClaim
		want  []string
	}{
		{fixture.Claim("", "block", fixture.OnClass(fast), block), []string{"spec.volumeMode", "NFS", "volumeMode: Filesystem"}},
		{fixture.Claim("", "self-backed", fixture.OnClass(managed), fixture.Annotated(v1alpha1.AnnotationBackingStorageClass, managed)), []string{"managed class itself", "ReadWriteOnce storage class"}},
		{fixture.Claim("", "missing-backing", fixture.OnClass(managed), fixture.Annotated(v1alpha1.AnnotationBackingStorageClass, "nope")), []string{"missing backing class"}},
		{fixture.Claim("", "not-opted-backing", fixture.OnClass(managed), fixture.Annotated(v1alpha1.AnnotationBackingStorageClass, plain)), []string{"not opted in"}},
		{fixture.Claim("", "forged", fixture.OnClass(fast), fixture.Annotated(v1alpha1.AnnotationBackingClaim, "other-team/their-data")), []string{v1alpha1.AnnotationBackingClaim, "another tenant"}},
		{fixture.Claim("", "forged-server", fixture.OnClass(fast), fixture.Annotated(v1alpha1.AnnotationServer, "x")), []string{v1alpha1.AnnotationServer, "only ShareWarden"}},
		{fixture.Claim("", "clone-other-class", fixture.OnClass(fast), cloneOf("slow-src")), []string{"spec.dataSource", `clone a claim backed by "fast"`}},
		{fixture.Claim("", "static-clone", fixture.OnClass(static), cloneOf("slow-src")), []string{"no dynamic provisioner"}},
	}
	for _, tc := range cases {
		_, err := claims.Create(ctx, tc.claim, metav1.CreateOptions{})
		if err == nil {
			t.Errorf("%s: admitted", tc.claim.Name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, `admission webhook "`+webhookrun.ClaimsWebhook+`" denied the request`) {
			t.Errorf("%s: not a denial by the webhook: %v", tc.claim.Name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: denial lacks %q: %s", tc.claim.Name, w, msg)
			}
		}
		if _, err := claims.Get(ctx, tc.claim.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: refused claim exists (%v)", tc.claim.Name, err)
		}
	}

	// On update too: a user cannot point an existing claim at another volume.
	patch := []byte(`{"metadata":{"annotations":{"` + v1alpha1.AnnotationBackingClaim + `":"other-team/data"}}}`)
	_, err := claims.Patch(ctx, "slow-src", types.MergePatchType, patch, metav1.PatchOptions{})
	if err == nil || !strings.Contains(err.Error(), "only ShareWarden sets or changes") {
		t.Errorf("adding a system annotation by update: %v", err)
	}
}

// Clones and restores: a clone of a ShareWarden claim is admitted (its backing claim will be
// cloned from the source's); a clone of an ordinary claim and a snapshot restore, which the
// backing claim in ShareWarden's namespace cannot reach, are refused with what works instead.
func TestClones(t *testing.T) {
	ctx := testContext(t)
	ns := fixture.Namespace(t, ctx, plane, "")
	claims := plane.Client().CoreV1().PersistentVolumeClaims(ns)
	for _, c := range []*corev1.PersistentVolumeClaim{fixture.Claim("", "src", fixture.OnClass(fast)), fixture.Claim("", "rwo", fixture.OnClass(fast), fixture.Modes(corev1.ReadWriteOnce))} {
		if _, err := claims.Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", c.Name, err)
		}
	}
	cloneOf := func(name string) fixture.ClaimOption {
		return func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: name}
		}
	}

	if _, err := claims.Create(ctx, fixture.Claim("", "copy", fixture.OnClass(fast), cloneOf("src")), metav1.CreateOptions{}); err != nil {
		t.Fatalf("clone of a ShareWarden claim refused: %v", err)
	}
	got, err := claims.Get(ctx, "copy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(got.Spec.StorageClassName, "") != managed || got.Annotations[v1alpha1.AnnotationBackingStorageClass] != fast {
		t.Errorf("clone not rewritten: class %q annotations %v", ptr.Deref(got.Spec.StorageClassName, ""), got.Annotations)
	}
	if ds := got.Spec.DataSource; ds == nil || ds.Kind != "PersistentVolumeClaim" || ds.Name != "src" {
		t.Errorf("clone's data source %+v, want claim src", ds)
	}

	cases := []struct {
		claim *corev1.PersistentVolumeClaim
		want  []string
	}{
		{fixture.Claim("", "copy-rwo", fixture.OnClass(fast), cloneOf("rwo")),
			[]string{"spec.dataSource", `claim "rwo" is not a ShareWarden volume`, "clone a ShareWarden ReadWriteMany claim", "copy the data in"}},
		{fixture.Claim("", "from-other-namespace", fixture.OnClass(fast), func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: ptr.To("snapshot.storage.k8s.io"), Kind: "VolumeSnapshot", Name: "snap", Namespace: ptr.To("elsewhere")}
		}), []string{"spec.dataSourceRef.namespace", "another namespace"}},
	}
	for _, tc := range cases {
		_, err := claims.Create(ctx, tc.claim, metav1.CreateOptions{})
		if err == nil {
			t.Errorf("%s: admitted", tc.claim.Name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, `admission webhook "`+webhookrun.ClaimsWebhook+`" denied the request`) {
			t.Errorf("%s: not a denial by the webhook: %v", tc.claim.Name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: denial lacks %q: %s", tc.claim.Name, w, msg)
			}
		}
	}
}

func TestConsumerPodsMarked(t *testing.T) {
	ctx := testContext(t)
	ns := fixture.Namespace(t, ctx, plane, "")
	cs := plane.Client()
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, fixture.Claim("", "shared", fixture.OnClass(fast)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, fixture.Claim("", "own", fixture.OnClass(fast), fixture.Modes(corev1.ReadWriteOnce)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, vols ...corev1.Volume) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{
				Volumes:    vols,
				Containers: []corev1.Container{{Name: "app", Image: "app"}, {Name: "side", Image: "side"}},
			},
		}
	}
	pvcVol := func(claimName string) corev1.Volume {
		return corev1.Volume{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claimName}}}
	}
	ephemeral := corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
		VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: fixture.Claim("", "", fixture.OnClass(fast)).Spec},
	}}}
	cases := []struct {
		pod    *corev1.Pod
		marked bool
	}{
		// Created right after its claim: the read-through finds it even if the cache lags.
		{pod("consumer", pvcVol("shared")), true},
		{pod("ephemeral", ephemeral), true},
		{pod("ordinary", pvcVol("own")), false},
		{pod("no-volumes"), false},
	}
	for _, tc := range cases {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, tc.pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating %s: %v", tc.pod.Name, err)
		}
		got, err := cs.CoreV1().Pods(ns).Get(ctx, tc.pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		req, hasReq := got.Spec.Containers[0].Resources.Requests[v1alpha1.ResourceConsumer]
		lim, hasLim := got.Spec.Containers[0].Resources.Limits[v1alpha1.ResourceConsumer]
		if tc.marked && (!hasReq || !hasLim || req.Value() != 1 || lim.Value() != 1) {
			t.Errorf("%s: first container not marked: %v", got.Name, got.Spec.Containers[0].Resources)
		}
		if !tc.marked && (hasReq || hasLim) {
			t.Errorf("%s: marked but mounts no shared volume", got.Name)
		}
		if len(got.Spec.Containers[1].Resources.Limits) != 0 {
			t.Errorf("%s: second container changed: %v", got.Name, got.Spec.Containers[1].Resources)
		}
	}

	// The generic ephemeral volume's claim, made by the ephemeral-volume controller, is
	// rewritten too.
	var eph *corev1.PersistentVolumeClaim
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		c, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "ephemeral-scratch", metav1.GetOptions{})
		eph = c
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("ephemeral claim never created: %v", err)
	}
	if ptr.Deref(eph.Spec.StorageClassName, "") != managed {
		t.Errorf("ephemeral claim on %q, want %q", ptr.Deref(eph.Spec.StorageClassName, ""), managed)
	}

	// A forged marker is refused.
	forged := pod("forged")
	forged.Spec.Containers[0].Resources.Limits = corev1.ResourceList{v1alpha1.ResourceServer: *resourceOne()}
	forged.Spec.Containers[0].Resources.Requests = corev1.ResourceList{v1alpha1.ResourceServer: *resourceOne()}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, forged, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "only ShareWarden sets it") {
		t.Errorf("forged server marker: %v", err)
	}
}

func TestServerPodsMarked(t *testing.T) {
	ctx := testContext(t)
	ns := systemNamespace(t)
	pods := plane.Client().CoreV1().Pods(ns)
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nfs-x", Labels: map[string]string{v1alpha1.LabelComponent: v1alpha1.ComponentNFSServer}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "ganesha", Image: "ganesha"}}},
	}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: server.Spec}
	for _, p := range []*corev1.Pod{server, other} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := pods.Get(ctx, "nfs-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q := got.Spec.Containers[0].Resources.Limits[v1alpha1.ResourceServer]; q.Value() != 1 {
		t.Errorf("server pod not marked: %v", got.Spec.Containers[0].Resources)
	}
	got, err = pods.Get(ctx, "other", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Containers[0].Resources.Limits) != 0 {
		t.Errorf("ShareWarden's namespace is not left alone: %v", got.Spec.Containers[0].Resources)
	}
}

// With the webhook registered but its server gone, as in an outage: pods fail open, claims
// fail closed. A pod with an ordinary claim and a replacement NFS server pod are admitted (a
// failover never waits on the webhook); an RWX claim on an opted-in class is refused, and the
// refusal names the webhook and says it could not be reached.
func TestWebhookDown(t *testing.T) {
	ctx := testContext(t)
	// The suite's webhook would answer; take it out for this test.
	if err := hook.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := hook.Register(ctx); err != nil {
			t.Errorf("registering the suite's webhook again: %v", err)
		}
	})
	down, err := webhookrun.Start(ctx, plane, webhookrun.Options{ConfigurationName: "sharewarden-down"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := down.Stop(); err != nil {
			t.Errorf("removing the stopped webhook: %v", err)
		}
	})
	cs := plane.Client()
	ns := fixture.Namespace(t, ctx, plane, "")
	// An RWX claim admitted while the webhook still answered.
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, fixture.Claim("", "before", fixture.OnClass(fast)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := down.Shutdown(); err != nil {
		t.Fatal(err)
	}

	// Fails closed: the RWX claim is refused, by the apiserver, for want of the webhook.
	var msg string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, fixture.Claim("", "shared", fixture.OnClass(fast)), metav1.CreateOptions{})
		if err == nil {
			return false, errors.New("RWX claim admitted with the webhook down")
		}
		msg = err.Error()
		return strings.Contains(msg, "connection refused"), nil
	})
	if err != nil {
		t.Fatalf("RWX claim with the webhook down: %v (last refusal: %s)", err, msg)
	}
	for _, w := range []string{`failed calling webhook "` + webhookrun.ClaimsWebhook + `"`, "connection refused"} {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal lacks %q: %s", w, msg)
		}
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "shared", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused claim exists (%v)", err)
	}

	// Updates that leave ShareWarden's annotations alone (the PV controller binding the claim,
	// a resize, a finalizer removed) never wait on the webhook; one that changes them does.
	before, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "before", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before.Labels = map[string]string{"touched": "yes"}
	before.Annotations["pv.kubernetes.io/bind-completed"] = "yes"
	if before, err = cs.CoreV1().PersistentVolumeClaims(ns).Update(ctx, before, metav1.UpdateOptions{}); err != nil {
		t.Errorf("an update of an RWX claim that leaves ShareWarden's annotations alone was refused with the webhook down: %v", err)
	}
	before.Annotations[v1alpha1.AnnotationBackingStorageClass] = "other"
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Update(ctx, before, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), webhookrun.ClaimsWebhook) {
		t.Errorf("a change of ShareWarden's annotations must wait for the webhook, got %v", err)
	}
	if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "before", metav1.DeleteOptions{}); err != nil {
		t.Errorf("deleting an RWX claim with the webhook down: %v", err)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "before", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Errorf("an RWX claim deleted with the webhook down is not gone (its finalizer removal waits on the webhook?): %v", err)
	}

	// Fails open: a pod with an ordinary claim (a database recovering from the same incident).
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, fixture.Claim("", "db", fixture.OnClass(fast), fixture.Modes(corev1.ReadWriteOnce)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("RWO claim with the webhook down: %v", err)
	}
	db := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "db"}}}},
			Containers: []corev1.Container{{Name: "db", Image: "db"}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, db, metav1.CreateOptions{}); err != nil {
		t.Errorf("pod with an RWO claim refused with the webhook down: %v", err)
	}

	// Fails open: a replacement NFS server pod, labelled and placed as the provisioner makes
	// it after a failover (off the fenced node), mounting its backing claim.
	sys := systemNamespace(t)
	const uid = "0b5e7d1c-3a1f-4c8e-9a57-2f0d6c1e4b93"
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.ObjectName(uid), Labels: map[string]string{
			v1alpha1.LabelVolume:         uid,
			v1alpha1.LabelClaimNamespace: ns,
			v1alpha1.LabelClaimName:      "shared",
			v1alpha1.LabelClaimUID:       uid,
			v1alpha1.LabelManagedBy:      v1alpha1.ManagedByController,
			v1alpha1.LabelComponent:      v1alpha1.ComponentNFSServer,
		}},
		Spec: corev1.PodSpec{
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"fenced-node"}}},
				}}},
			}},
			Volumes: []corev1.Volume{{Name: "export", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: v1alpha1.ObjectName(uid)}}}},
			Containers: []corev1.Container{{Name: "nfs-server", Image: "sharewarden-nfs-server"}},
		},
	}
	got, err := cs.CoreV1().Pods(sys).Create(ctx, server, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("replacement NFS server pod refused with the webhook down: %v", err)
	}
	if _, marked := got.Spec.Containers[0].Resources.Limits[v1alpha1.ResourceServer]; marked {
		t.Error("server pod marked although the webhook is down: the test did not stop it")
	}

	// The stopped webhook was registered all along.
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "sharewarden-down", metav1.GetOptions{}); err != nil {
		t.Errorf("the stopped webhook's configuration: %v", err)
	}
}
