package extender

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

var benchSizes = []int{100, 1000, 5000, 15000}

// benchWorld is a cluster of n nodes in 3 zones, 1% of them fenced and 1% NotReady, with n/2
// NFS servers and 3n consumers already bound, and the benchmarked volume: replicated over three
// nodes (data-nodes annotation), or zonal (CSI topology) for the "zonal" kind.
func benchWorld(n int, zonal bool) (*Store, []string) {
	s := NewStore(corev1.LabelTopologyZone, DefaultLocators())
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("node-%05d", i)
		var mods []func(*corev1.Node)
		switch i % 100 {
		case 7:
			mods = append(mods, fencedLabel)
		case 8:
			mods = append(mods, notReady)
		}
		s.UpsertNode(node(names[i], fmt.Sprintf("zone-%d", i%3), mods...))
	}
	for i := range n / 2 {
		s.UpsertPod(serverPod(fmt.Sprintf("other-%d", i), "other", names[(i*7)%n]))
	}
	for i := range 3 * n {
		s.UpsertPod(consumerPod(fmt.Sprintf("c-%d", i), names[(i*13)%n], "data"))
	}
	pvMods := []func(*corev1.PersistentVolume){dataNodes(names[1] + "," + names[n/2] + "," + names[n-1])}
	if zonal {
		pvMods = []func(*corev1.PersistentVolume){csi, affinity(corev1.LabelTopologyZone, "zone-1")}
	}
	s.UpsertSharedVolume(sharedVolume("data", claimUID, func(st *swv1.SharedVolumeStatus) {
		st.Server.NodeName = names[n/3]
		st.FencedNodes = []string{names[2], names[3]}
	}))
	s.UpsertClaim(claim(sysNS, swv1.ObjectName(claimUID), "b", "backing"))
	s.UpsertClaim(claim(appNS, "data", claimUID, "pvc-data"))
	s.UpsertPV(pv("backing", pvMods...))
	s.SetSynced(true)
	return s, names
}

var benchKinds = []struct {
	name  string
	zonal bool
	pod   func() *corev1.Pod
}{
	{"server", false, func() *corev1.Pod { return serverPod(claimUID, "data", "") }},
	{"server-zonal", true, func() *corev1.Pod { return serverPod(claimUID, "data", "") }},
	{"consumer", false, func() *corev1.Pod { return consumerPod("web", "", "data") }},
}

// BenchmarkFilterPrioritize is one pod's filter then prioritize, as the handler runs them once
// the request is decoded (with its buffers reused, as the handler pools them): facts gathered
// from the Store for the request's node names, filter over all of them, prioritize over those
// that passed. It reports p50 and p99 per pod.
func BenchmarkFilterPrioritize(b *testing.B) {
	for _, kind := range benchKinds {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/nodes=%d", kind.name, n), func(b *testing.B) {
				s, names := benchWorld(n, kind.zonal)
				pod := kind.pod()
				role := RoleOf(pod)
				nodes := make([]*NodeInfo, n)
				counts := make([]int32, n)
				var fbuf FilterResult
				var passed []string
				var sbuf extenderv1.HostPriorityList
				lat := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t0 := time.Now()
					st := s.Gather(pod, role, names, nodes, nil)
					fbuf = filter(names, nodes, &st, fbuf)
					passed = passed[:0]
					for _, p := range fbuf.Passed {
						passed = append(passed, names[p])
					}
					var cs []int32
					if role == RoleServer {
						cs = counts[:len(passed)]
					}
					st = s.Gather(pod, role, passed, nodes[:len(passed)], cs)
					scores := score(passed, nodes[:len(passed)], &st, sbuf, nil)
					sbuf = scores
					lat = append(lat, time.Since(t0))
					if len(scores) == 0 {
						b.Fatal("no node passed")
					}
				}
				reportPercentiles(b, lat)
			})
		}
	}
}

// BenchmarkHandler is the same through the HTTP handler (no network): decoding the
// ExtenderArgs, deciding, encoding the answer, for filter then prioritize (over the nodes that
// passed), as kube-scheduler sends them.
func BenchmarkHandler(b *testing.B) {
	for _, kind := range benchKinds {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/nodes=%d", kind.name, n), func(b *testing.B) {
				s, names := benchWorld(n, kind.zonal)
				srv, err := NewServer(logf.IntoContext(context.Background(), logr.Discard()), DefaultConfig(), s)
				if err != nil {
					b.Fatal(err)
				}
				filterBody, err := json.Marshal(extenderv1.ExtenderArgs{Pod: kind.pod(), NodeNames: &names})
				if err != nil {
					b.Fatal(err)
				}
				rec := httptest.NewRecorder()
				srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scheduler/filter", bytes.NewReader(filterBody)))
				var fr extenderv1.ExtenderFilterResult
				if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &fr) != nil || fr.NodeNames == nil {
					b.Fatalf("filter: %d", rec.Code)
				}
				prioBody, err := json.Marshal(extenderv1.ExtenderArgs{Pod: kind.pod(), NodeNames: fr.NodeNames})
				if err != nil {
					b.Fatal(err)
				}
				lat := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					t0 := time.Now()
					for _, req := range []struct {
						path string
						body []byte
					}{{"/scheduler/filter", filterBody}, {"/scheduler/prioritize", prioBody}} {
						w := discard{h: http.Header{}}
						srv.ServeHTTP(&w, httptest.NewRequest(http.MethodPost, req.path, bytes.NewReader(req.body)))
						if w.code != 0 && w.code != http.StatusOK {
							b.Fatalf("%s: %d", req.path, w.code)
						}
					}
					lat = append(lat, time.Since(t0))
				}
				reportPercentiles(b, lat)
			})
		}
	}
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds()), "p99-µs")
}
