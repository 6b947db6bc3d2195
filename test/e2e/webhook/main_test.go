// Package webhook_test is the webhook's end-to-end suite: a real kube-apiserver (test/cluster)
// calls the webhook, run in-process on 127.0.0.1 with a self-generated certificate and
// registered by test/webhookrun.
package webhook_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
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
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if testing.Short() {
		fmt.Println("skipping webhook e2e: -short")
		return 0
	}
	binDir := cluster.DefaultBinDir()
	if err := cluster.CheckBinaries(binDir); err != nil {
		return cluster.SkipE2E("webhook", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	plane, err = cluster.Start(ctx, cluster.Config{BinDir: binDir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the control plane: %v\n", err)
		return 1
	}
	defer func() { _ = plane.Stop() }()
	if err := createClasses(ctx, plane.Client()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	hook, err = webhookrun.Start(ctx, plane, webhookrun.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the webhook: %v\n", err)
		return 1
	}
	defer func() {
		if err := hook.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the webhook: %v\n", err)
		}
	}()
	return m.Run()
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

// namespace creates a namespace for the calling test, deleted when it ends.
func namespace(t testing.TB) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(name, "-")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := plane.CreateNamespace(ctx, name, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = plane.Client().CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
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
	if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = plane.Client().CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	})
	return ns
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

type claimOpt func(*corev1.PersistentVolumeClaim)

func claim(name string, opts ...claimOpt) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func on(class string) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To(class) }
}

func modes(m ...corev1.PersistentVolumeAccessMode) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) { c.Spec.AccessModes = m }
}

func annotated(k, v string) claimOpt {
	return func(c *corev1.PersistentVolumeClaim) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations[k] = v
	}
}

func resourceOne() *resource.Quantity {
	q := resource.MustParse("1")
	return &q
}
