package fencing_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/sharewarden/sharewarden/nfsserver"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// BenchmarkFailover kills the serving node of one volume ten times with the default lease,
// NFS lease and grace settings and reports, from node death, (a) the replacement server
// answering NFS and (b) the client's next write acknowledged (median and max). Then, on the same
// plane, the same kind of volume mounted by a plain one-replica StatefulSet without ShareWarden:
// time until its pod runs again elsewhere, capped by SHAREWARDEN_STS_CAP (default 10m).
func BenchmarkFailover(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if err := addExtraNodes(ctx); err != nil {
		b.Fatal(err)
	}
	var serving, acked []time.Duration
	for b.Loop() {
		// Default server settings but for NFSv4.0, which libnfs, the client here, needs.
		v := newVolume(b, ctx, "bench-failover")
		l := startLoad(b, v.runner, v.first.UID, v.ep)
		for range 10 {
			f, answered := killAndTime(b, ctx, v, l)
			serving = append(serving, answered)
			acked = append(acked, f.acknowledge)
			restoreNode(b, ctx, l, f.deadNode)
		}
		l.finish()
	}
	b.ReportMetric(median(serving).Seconds(), "serving-p50-s")
	b.ReportMetric(maxOf(serving).Seconds(), "serving-max-s")
	b.ReportMetric(median(acked).Seconds(), "write-p50-s")
	b.ReportMetric(maxOf(acked).Seconds(), "write-max-s")

	capDur := 10 * time.Minute
	if s := os.Getenv("SHAREWARDEN_STS_CAP"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		capDur = d
	}
	sts, ok := statefulSetFailover(b, ctx, capDur)
	if ok {
		b.ReportMetric(sts.Seconds(), "statefulset-s")
	} else {
		b.ReportMetric(-1, "statefulset-s")
		b.Logf("StatefulSet pod not running elsewhere within the %s cap", capDur)
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func maxOf(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// killAndTime kills the serving node and also measures when the replacement first answers an
// NFS NULL call (the agent's readiness probe), from the node's death.
func killAndTime(b testing.TB, ctx context.Context, v *volume, l *load) (failover, time.Duration) {
	l.mu.Lock()
	before := l.curUID
	l.mu.Unlock()
	t0 := time.Now()
	answered := make(chan time.Duration, 1)
	go func() {
		for ctx.Err() == nil {
			l.mu.Lock()
			uid, ep := l.curUID, l.current
			l.mu.Unlock()
			if uid != before && nfsserver.ProbeNFS(ctx, net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port)), time.Second) == nil {
				answered <- time.Since(t0)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		answered <- 0
	}()
	f := killServerNode(b, ctx, v.c, l, v.podKey)
	return f, <-answered
}

// statefulSetFailover runs the same workload the stock way: a one-replica StatefulSet with an
// RWO claim; its node dies and the time until its pod runs on another node is returned.
func statefulSetFailover(b *testing.B, ctx context.Context, capDur time.Duration) (time.Duration, bool) {
	cs := plane.Client()
	const ns = "bench-sts"
	if err := plane.CreateNamespace(ctx, ns, nil); err != nil {
		b.Fatal(err)
	}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nfs"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1), ServiceName: "nfs",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nfs"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nfs"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nfs", Image: "nfs-server",
					VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/export"}}}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: ptr.To(fixture.BackingClass),
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				},
			}},
		},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var node string
	fixture.WaitFor(b, ctx, 2*time.Minute, "StatefulSet pod running", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "nfs-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		node = p.Spec.NodeName
		return nil
	})
	t0 := time.Now()
	if err := plane.FailNode(node); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = plane.RestoreNode(context.Background(), node) }()
	for time.Since(t0) < capDur {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "nfs-0", metav1.GetOptions{})
		if err == nil && p.Spec.NodeName != "" && p.Spec.NodeName != node && p.Status.Phase == corev1.PodRunning {
			return time.Since(t0), true
		}
		time.Sleep(time.Second)
	}
	return 0, false
}
