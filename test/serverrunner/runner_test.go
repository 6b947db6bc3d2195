package serverrunner

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// TestStopWhileInUse stops the runner while tests still partition and heal nodes and ask for
// Service addresses, and after a pod event was handled: run with -race, it proves that Stop
// shares no map or slice with them unguarded, and Stop must return (no address handed out
// once it began can keep it waiting).
func TestStopWhileInUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns, node = "sharewarden-system", "node-a"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: swv1.ObjectName("u-1"), UID: "u-1",
			Labels: map[string]string{swv1.LabelComponent: swv1.ComponentNFSServer}},
		Spec: corev1.PodSpec{NodeName: node, Volumes: []corev1.Volume{{Name: "export", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: swv1.ObjectName("u-1")}}}}},
	}
	var mu sync.Mutex
	var logs []string
	handled := make(chan struct{})
	r, err := Start(ctx, Config{
		Client: fake.NewClientset(pod), Binary: os.Args[0], Namespace: ns, WorkDir: t.TempDir(),
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			logs = append(logs, fmt.Sprintf(format, args...))
			if len(logs) == 1 {
				close(handled)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pod's backing claim does not exist: its handler logs that and starts nothing.
	select {
	case <-handled:
	case <-ctx.Done():
		t.Fatal("the server pod was never handled")
	}

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				r.PartitionNode(node)
				if err := r.HealNode(ctx, node); err != nil {
					t.Errorf("HealNode: %v", err)
				}
				// Refused once Stop began; either way, never left open.
				_, _ = r.ServiceAddress(fmt.Sprintf("10.96.%d.%d", i, j))
				r.Endpoint(pod.Name)
				r.Running(pod.UID)
			}
		}()
	}
	r.Stop()
	wg.Wait()

	if _, ok := r.Endpoint(pod.Name); ok || r.Running(pod.UID) {
		t.Error("a server runs after Stop")
	}
	if _, err := r.ServiceAddress("10.96.99.1"); err == nil {
		t.Error("ServiceAddress after Stop handed out a new address")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs[0], "backing claim") {
		t.Errorf("first log line %q, want the missing backing claim", logs[0])
	}
}
