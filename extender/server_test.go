package extender

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Pods as kube-scheduler sends them (abridged to what matters).
const (
	serverPodJSON = `{"metadata":{"name":"sw-uid-1","namespace":"sharewarden-system","labels":{
		"sharewarden.io/claim-namespace":"app","sharewarden.io/claim-name":"data","sharewarden.io/claim-uid":"uid-1"}},
		"spec":{"containers":[{"name":"nfs-server","resources":{"requests":{"sharewarden.io/rwx-server":"1"},"limits":{"sharewarden.io/rwx-server":"1"}}}],
		"volumes":[{"name":"export","persistentVolumeClaim":{"claimName":"sw-uid-1"}}]}}`
	consumerPodJSON = `{"metadata":{"name":"web","namespace":"app"},
		"spec":{"containers":[{"name":"c","resources":{"requests":{"sharewarden.io/rwx-consumer":"1"},"limits":{"sharewarden.io/rwx-consumer":"1"}}}],
		"volumes":[{"name":"v","persistentVolumeClaim":{"claimName":"data"}}]}}`
	plainPodJSON = `{"metadata":{"name":"plain","namespace":"app"},"spec":{"containers":[{"name":"c"}]}}`
)

func testServer(t *testing.T, facts Facts) (*Server, *httptest.Server) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 64 << 10
	s, err := NewServer(context.Background(), cfg, facts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// serverWorld: data on b1 (annotation), b2 fenced for the volume, a1 fenced by label.
func serverWorld() *Store {
	return bound([]func(*corev1.PersistentVolume){dataNodes("b1")}, func(s *swv1.SharedVolumeStatus) {
		s.FencedNodes = []string{"b2"}
		s.Server.NodeName = "b1"
	}, node("a1", "zone-a", fencedLabel))
}

func TestFilterRoundTrip(t *testing.T) {
	s, hs := testServer(t, serverWorld())
	for _, tc := range []struct {
		name, body   string
		passed       []string
		unresolvable []string
	}{
		{"server, node names", `{"Pod":` + serverPodJSON + `,"NodeNames":["a1","a2","b1","b2"]}`, []string{"a2", "b1"}, []string{"a1", "b2"}},
		{"consumer, node names", `{"Pod":` + consumerPodJSON + `,"NodeNames":["a1","a2","b1","b2"]}`, []string{"a2", "b1"}, []string{"a1", "b2"}},
		{"plain pod: unchanged", `{"Pod":` + plainPodJSON + `,"NodeNames":["a1","a2","b1","b2"]}`, []string{"a1", "a2", "b1", "b2"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, hs.URL+"/scheduler/filter", tc.body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			var res extenderv1.ExtenderFilterResult
			if err := json.Unmarshal([]byte(body), &res); err != nil {
				t.Fatal(err)
			}
			if res.NodeNames == nil || strings.Join(*res.NodeNames, ",") != strings.Join(tc.passed, ",") {
				t.Errorf("NodeNames %v, want %v (body %s)", res.NodeNames, tc.passed, body)
			}
			if got := keys(res.FailedAndUnresolvableNodes); strings.Join(got, ",") != strings.Join(tc.unresolvable, ",") {
				t.Errorf("unresolvable %v, want %v", got, tc.unresolvable)
			}
			if res.Nodes != nil || res.Error != "" {
				t.Errorf("unexpected Nodes or Error: %s", body)
			}
		})
	}
	if got := testutil.ToFloat64(s.metrics.requests.WithLabelValues(VerbFilter, "other")); got != 1 {
		t.Errorf("plain pod requests counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.filtered.WithLabelValues("server", ReasonFenced)); got != 2 {
		t.Errorf("fenced nodes filtered for servers %v, want 2", got)
	}
}

func TestFilterFullNodeObjects(t *testing.T) {
	// A scheduler without nodeCacheCapable sends whole nodes: they are judged as sent (here a2
	// is NotReady in the request though Ready in the cache) and answered as Nodes.
	_, hs := testServer(t, serverWorld())
	nodes := `{"Items":[
		{"metadata":{"name":"a2","labels":{"topology.kubernetes.io/zone":"zone-a"}},"status":{"conditions":[{"type":"Ready","status":"False"}]}},
		{"metadata":{"name":"b1","labels":{"topology.kubernetes.io/zone":"zone-b"}},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
		{"metadata":{"name":"c1","labels":{"sharewarden.io/fenced":"true"}},"status":{"conditions":[{"type":"Ready","status":"True"}]}}]}`
	code, body := post(t, hs.URL+"/scheduler/filter", `{"Pod":`+serverPodJSON+`,"Nodes":`+nodes+`}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var res extenderv1.ExtenderFilterResult
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	if res.NodeNames != nil || res.Nodes == nil || len(res.Nodes.Items) != 1 || res.Nodes.Items[0].Name != "b1" ||
		res.Nodes.Items[0].Labels["topology.kubernetes.io/zone"] != "zone-b" {
		t.Errorf("want node b1 back, whole: %s", body)
	}
	if got := keys(res.FailedAndUnresolvableNodes); strings.Join(got, ",") != "a2,c1" {
		t.Errorf("unresolvable %v", got)
	}
}

func TestPrioritizeRoundTrip(t *testing.T) {
	_, hs := testServer(t, serverWorld())
	for _, tc := range []struct {
		name, body string
		want       map[string]int64
	}{
		// Scores 3, 9, 3: only what lies above the lowest is sent.
		{"server: data node first", `{"Pod":` + serverPodJSON + `,"NodeNames":["a2","b1","c1"]}`, map[string]int64{"b1": 6}},
		// Scores 0, 10, 9, 0.
		{"consumer: server's node, then zone", `{"Pod":` + consumerPodJSON + `,"NodeNames":["a2","b1","b2","c1"]}`, map[string]int64{"b1": 10, "b2": 9}},
		// Scores 0, 0: nothing to tell apart.
		{"consumer: no node near the server", `{"Pod":` + consumerPodJSON + `,"NodeNames":["a2","c1"]}`, map[string]int64{}},
		{"plain pod: no opinion", `{"Pod":` + plainPodJSON + `,"NodeNames":["a2","b1"]}`, map[string]int64{}},
		{"consumer, whole nodes", `{"Pod":` + consumerPodJSON + `,"Nodes":{"Items":[{"metadata":{"name":"b2","labels":{"topology.kubernetes.io/zone":"zone-b"}}},{"metadata":{"name":"c1"}}]}}`, map[string]int64{"b2": 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, hs.URL+"/scheduler/prioritize", tc.body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			var res extenderv1.HostPriorityList
			if err := json.Unmarshal([]byte(body), &res); err != nil {
				t.Fatal(err)
			}
			if res == nil {
				t.Errorf("answer %q: want a list, even empty", body)
			}
			checkScores(t, res, tc.want)
		})
	}
}

func TestBadRequests(t *testing.T) {
	s, hs := testServer(t, serverWorld())
	big := `{"Pod":` + consumerPodJSON + `,"NodeNames":["` + strings.Repeat("n", 70<<10) + `"]}`
	for _, tc := range []struct {
		name, path, body, want string
	}{
		{"not JSON", "/scheduler/filter", `{"Pod":`, "decoding JSON"},
		{"wrong type", "/scheduler/prioritize", `{"Pod":[1,2]}`, "decoding JSON"},
		{"no pod", "/scheduler/filter", `{"NodeNames":["a1"]}`, "no pod"},
		{"no nodes", "/scheduler/filter", `{"Pod":` + plainPodJSON + `}`, "neither"},
		{"trailing data", "/scheduler/filter", `{"Pod":` + plainPodJSON + `,"NodeNames":[]} {}`, "after top-level value"},
		{"oversized", "/scheduler/filter", big, "larger than"},
		{"unknown verb", "/scheduler/preempt", `{}`, "unknown extender verb"},
		{"empty verb", "/scheduler/", `{}`, "unknown extender verb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := post(t, hs.URL+tc.path, tc.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
				t.Errorf("got %d %q, want 400 with %q", code, body, tc.want)
			}
		})
	}
	resp, err := http.Get(hs.URL + "/scheduler/filter")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if got := testutil.ToFloat64(s.metrics.badRequests.WithLabelValues(VerbFilter)); got != 6 {
		t.Errorf("bad filter requests counted %v, want 6", got)
	}
}

func TestReadyOnlyOnceSynced(t *testing.T) {
	st := serverWorld()
	st.SetSynced(false)
	s, hs := testServer(t, st)
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if c := get(s, "/readyz"); c == http.StatusOK {
		t.Errorf("ready before sync")
	}
	if c := get(s, "/healthz"); c != http.StatusOK {
		t.Errorf("healthz %d", c)
	}
	st.SetSynced(true)
	for _, h := range []http.Handler{s, s.HealthHandler()} {
		if c := get(h, "/readyz"); c != http.StatusOK {
			t.Errorf("readyz %d after sync", c)
		}
		if c := get(h, "/metrics"); c != http.StatusOK {
			t.Errorf("metrics %d", c)
		}
	}
	if c := get(s.HealthHandler(), "/scheduler/filter"); c != http.StatusNotFound {
		t.Errorf("health handler serves the verbs: %d", c)
	}
	_ = hs
}

func TestNewServerValidates(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URLPrefix = "x"
	cfg.Locators = []DataLocator{nil}
	if _, err := NewServer(context.Background(), cfg, NewStore("z", nil)); err == nil ||
		!strings.Contains(err.Error(), "url-prefix") || !strings.Contains(err.Error(), "nil") {
		t.Errorf("err = %v", err)
	}
	if _, err := NewServer(context.Background(), DefaultConfig(), nil); err == nil {
		t.Error("no facts accepted")
	}
}

// An answer larger than net/http's 2 KiB buffer would go out chunked; with its length set,
// kube-scheduler's JSON decoder reaches the body's end with its last byte and the client keeps
// the connection for the next call.
func TestAnswersCarryTheirLength(t *testing.T) {
	_, hs := testServer(t, serverWorld())
	names := make([]string, 500)
	for i := range names {
		names[i] = `"node-` + strings.Repeat("x", 20) + strconv.Itoa(i) + `"`
	}
	body := `{"Pod":` + consumerPodJSON + `,"NodeNames":[` + strings.Join(names, ",") + `]}`
	resp, err := http.Post(hs.URL+"/scheduler/filter", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(answer) < 4<<10 || resp.ContentLength != int64(len(answer)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("answer of %d bytes sent with Content-Length %d, Transfer-Encoding %v", len(answer), resp.ContentLength, resp.TransferEncoding)
	}
}
