// Package webhook_test is the webhook's end-to-end suite: a real kube-apiserver (test/cluster)
// calls the webhook, run in-process on 127.0.0.1 with a self-generated certificate and
// registered by test/webhookrun.
package webhook_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
	"github.com/sharewarden/sharewarden/test/webhookrun"
)

// The plane and the webhook every case shares; each case works in its own namespace.
var (
	plane *cluster.Cluster
	hook  *webhookrun.Webhook
)

// Storage classes: "fast" and "slow" opted in, "plain" not, "static" opted in but without a
// dynamic provisioner, and the managed class backed by "fast".
const (
	fast    = "fast"
	slow    = "slow"
	plain   = "plain"
	static  = "static"
	managed = v1alpha1.DefaultManagedStorageClass
)

func TestMain(m *testing.M) {
	fixture.RunSuite(m, fixture.Suite{
		Name:  "webhook",
		Plane: &cluster.Config{},
		Setup: func(ctx context.Context, e *fixture.Env) error {
			plane = e.Plane
			if err := createClasses(ctx, plane.Client()); err != nil {
				return err
			}
			var err error
			if hook, err = webhookrun.Start(ctx, plane, webhookrun.Options{}); err != nil {
				return fmt.Errorf("starting the webhook: %w", err)
			}
			e.Cleanup(func() {
				if err := hook.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "stopping the webhook: %v\n", err)
				}
			})
			return nil
		},
	})
}

func createClasses(ctx context.Context, cs kubernetes.Interface) error {
	optIn := map[string]string{v1alpha1.AnnotationRWX: v1alpha1.RWXModeNFS}
	for _, sc := range []*storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: fast, Annotations: optIn}, Provisioner: "csi.example.com"},
		{ObjectMeta: metav1.ObjectMeta{Name: slow, Annotations: optIn}, Provisioner: "csi.example.com"},
		{ObjectMeta: metav1.ObjectMeta{Name: plain}, Provisioner: "csi.example.com"},
		{ObjectMeta: metav1.ObjectMeta{Name: static, Annotations: optIn}, Provisioner: "kubernetes.io/no-provisioner"},
		{ObjectMeta: metav1.ObjectMeta{Name: managed}, Provisioner: v1alpha1.Provisioner,
			Parameters: map[string]string{v1alpha1.ParameterBackingStorageClass: fast}},
	} {
		if _, err := cs.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating storage class %s: %w", sc.Name, err)
		}
	}
	return nil
}

// systemNamespace creates ShareWarden's own namespace for the calling test (waiting out an
// earlier test's deletion of it), deleted when it ends.
func systemNamespace(t testing.TB) string {
	t.Helper()
	ns := v1alpha1.DefaultSystemNamespace
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err := plane.Client().CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err) || (err == nil && got.Status.Phase != corev1.NamespaceTerminating), nil
	})
	if err != nil {
		t.Fatalf("namespace %s still terminating: %v", ns, err)
	}
	return fixture.Namespace(t, ctx, plane, ns)
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func resourceOne() *resource.Quantity {
	q := resource.MustParse("1")
	return &q
}
