package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/webhook"
)

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(storagev1.AddToScheme(s))
	return s
}

// cluster: "fast" opted in and the default, "plain" not, the managed class backed by "fast",
// and three claims in team-a: "shared" and "legacy" are ShareWarden's ("legacy" records no
// backing class, so the managed class's default backs it), "own" is an ordinary RWO claim.
func clusterObjects() []client.Object {
	return []client.Object{
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast", Annotations: map[string]string{
			v1alpha1.AnnotationRWX: v1alpha1.RWXModeNFS, "storageclass.kubernetes.io/is-default-class": "true"}}, Provisioner: "csi.example.com"},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Provisioner: "csi.example.com"},
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.DefaultManagedStorageClass}, Provisioner: v1alpha1.Provisioner,
			Parameters: map[string]string{v1alpha1.ParameterBackingStorageClass: "fast"}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "shared", Namespace: "team-a",
			Annotations: map[string]string{v1alpha1.AnnotationBackingStorageClass: "fast"}},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr(v1alpha1.DefaultManagedStorageClass), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "legacy", Namespace: "team-a"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr(v1alpha1.DefaultManagedStorageClass), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "own", Namespace: "team-a"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr("plain"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}},
	}
}

func ptr[T any](v T) *T { return &v }

func config() webhook.Config {
	c := webhook.NewOptions().Config
	return c
}

func newServer(t testing.TB, reader client.Reader) *webhook.Server {
	t.Helper()
	if reader == nil {
		reader = fake.NewClientBuilder().WithScheme(scheme()).WithObjects(clusterObjects()...).Build()
	}
	s, err := webhook.NewServer(context.Background(), config(), reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// review builds a raw AdmissionReview the way the apiserver sends it.
func review(uid, kind, op, namespace, user, object, old string) string {
	if old == "" {
		old = "null"
	}
	return fmt.Sprintf(`{
  "apiVersion": "admission.k8s.io/v1",
  "kind": "AdmissionReview",
  "request": {
    "uid": %q,
    "kind": {"group": "", "version": "v1", "kind": %q},
    "resource": {"group": "", "version": "v1", "resource": "x"},
    "namespace": %q,
    "operation": %q,
    "userInfo": {"username": %q},
    "object": %s,
    "oldObject": %s
  }
}`, uid, kind, namespace, op, user, object, old)
}

const rwxClaim = `{"apiVersion":"v1","kind":"PersistentVolumeClaim",
  "metadata":{"name":"data","namespace":"team-a","annotations":{"team":"a"}},
  "spec":{"accessModes":["ReadWriteMany"],"storageClassName":"fast","resources":{"requests":{"storage":"1Gi"}}}}`

type answer struct {
	httpStatus int
	review     admissionv1.AdmissionReview
	raw        string
}

func post(t testing.TB, h http.Handler, path, body string) answer {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	a := answer{httpStatus: rec.Code, raw: rec.Body.String()}
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &a.review); err != nil {
			t.Fatalf("response is not an AdmissionReview: %v\n%s", err, rec.Body.String())
		}
		if a.review.Response == nil {
			t.Fatalf("AdmissionReview without response: %s", rec.Body.String())
		}
	}
	return a
}

// applyPatch applies the response's patch to the request's object.
func applyPatch(t *testing.T, object string, resp *admissionv1.AdmissionResponse, into any) {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v, want JSONPatch", resp.PatchType)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", resp.Patch, err)
	}
	out, err := p.Apply([]byte(object))
	if err != nil {
		t.Fatalf("applying patch %s: %v", resp.Patch, err)
	}
	if err := json.Unmarshal(out, into); err != nil {
		t.Fatal(err)
	}
}

func TestClaimRewritten(t *testing.T) {
	s := newServer(t, nil)
	a := post(t, s, webhook.PathClaims, review("u-1", "PersistentVolumeClaim", "CREATE", "team-a", "alice", rwxClaim, ""))
	r := a.review.Response
	if a.review.Kind != "AdmissionReview" || a.review.APIVersion != "admission.k8s.io/v1" {
		t.Errorf("response typed %s/%s", a.review.APIVersion, a.review.Kind)
	}
	if r.UID != "u-1" || !r.Allowed {
		t.Fatalf("uid %q allowed %v: %s", r.UID, r.Allowed, a.raw)
	}
	var got corev1.PersistentVolumeClaim
	applyPatch(t, rwxClaim, r, &got)
	if *got.Spec.StorageClassName != v1alpha1.DefaultManagedStorageClass {
		t.Errorf("storageClassName %q", *got.Spec.StorageClassName)
	}
	if got.Annotations[v1alpha1.AnnotationBackingStorageClass] != "fast" || got.Annotations["team"] != "a" {
		t.Errorf("annotations %v", got.Annotations)
	}
	// Marked with the managed class's provisioner, so the PV controller need not update it.
	if got.Annotations[v1alpha1.AnnotationStorageProvisioner] != v1alpha1.Provisioner || got.Annotations[v1alpha1.AnnotationBetaStorageProvisioner] != v1alpha1.Provisioner {
		t.Errorf("provisioner annotations %v", got.Annotations)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "rewritten") {
		t.Errorf("warnings %v", r.Warnings)
	}
	// The patch only touches what the rule changed: the class and three annotations.
	var ops []map[string]any
	if err := json.Unmarshal(r.Patch, &ops); err != nil || len(ops) != 4 {
		t.Errorf("want 4 patch operations, got %s (%v)", r.Patch, err)
	}
}

// Fields this build does not know survive: the patch is computed from typed encodings.
func TestPatchKeepsUnknownFields(t *testing.T) {
	s := newServer(t, nil)
	obj := strings.Replace(rwxClaim, `"spec":{`, `"spec":{"futureField":{"x":1},`, 1)
	a := post(t, s, webhook.PathClaims, review("u", "PersistentVolumeClaim", "CREATE", "team-a", "alice", obj, ""))
	var got map[string]any
	applyPatch(t, obj, a.review.Response, &got)
	spec := got["spec"].(map[string]any)
	if spec["futureField"] == nil || spec["storageClassName"] != v1alpha1.DefaultManagedStorageClass {
		t.Errorf("spec after patch: %v", spec)
	}
}

func TestClaimDecisions(t *testing.T) {
	claimJSON := func(mutate func(*corev1.PersistentVolumeClaim)) string {
		var c corev1.PersistentVolumeClaim
		if err := json.Unmarshal([]byte(rwxClaim), &c); err != nil {
			t.Fatal(err)
		}
		mutate(&c)
		b, _ := json.Marshal(&c)
		return string(b)
	}
	cases := []struct {
		name, op, user, object, old string
		allowed, patched            bool
		code                        int32
		message                     []string
	}{
		{name: "RWO passes untouched", op: "CREATE", object: claimJSON(func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
		}), allowed: true},
		{name: "class not opted in passes untouched", op: "CREATE", object: claimJSON(func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr("plain") }), allowed: true},
		{name: "unset class resolves to the opted-in default", op: "CREATE", object: claimJSON(func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = nil }),
			allowed: true, patched: true},
		{name: "block is refused", op: "CREATE", object: claimJSON(func(c *corev1.PersistentVolumeClaim) {
			c.Spec.VolumeMode = ptr(corev1.PersistentVolumeBlock)
		}), code: 422, message: []string{`PersistentVolumeClaim "data" is invalid`, "spec.volumeMode", "volumeMode: Filesystem"}},
		{name: "system annotation from a user is refused", op: "CREATE", object: claimJSON(func(c *corev1.PersistentVolumeClaim) {
			c.Annotations[v1alpha1.AnnotationBackingClaim] = "team-b/theirs"
		}), code: 422, message: []string{"backing-claim", "another tenant"}},
		{name: "system annotation from ShareWarden is fine", op: "CREATE", user: webhook.DefaultSystemUser, object: claimJSON(func(c *corev1.PersistentVolumeClaim) {
			c.Annotations[v1alpha1.AnnotationBackingClaim] = "sharewarden-system/x"
		}), allowed: true, patched: true},
		{name: "update adding a system annotation is refused", op: "UPDATE",
			object: claimJSON(func(c *corev1.PersistentVolumeClaim) { c.Annotations[v1alpha1.AnnotationServer] = "x" }),
			old:    claimJSON(func(*corev1.PersistentVolumeClaim) {}), code: 422, message: []string{"sharewarden.io/server"}},
		{name: "update by ShareWarden", op: "UPDATE", user: webhook.DefaultSystemUser,
			object: claimJSON(func(c *corev1.PersistentVolumeClaim) { c.Annotations[v1alpha1.AnnotationServer] = "x" }),
			old:    claimJSON(func(*corev1.PersistentVolumeClaim) {}), allowed: true},
		{name: "delete is not ours", op: "DELETE", object: "null", old: rwxClaim, allowed: true},
		{name: "generateName in the denial", op: "CREATE", object: claimJSON(func(c *corev1.PersistentVolumeClaim) {
			c.Name, c.GenerateName = "", "data-"
			c.Spec.VolumeMode = ptr(corev1.PersistentVolumeBlock)
		}), code: 422, message: []string{`"data-*"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, nil)
			user := tc.user
			if user == "" {
				user = "alice"
			}
			a := post(t, s, webhook.PathClaims, review("u-2", "PersistentVolumeClaim", tc.op, "team-a", user, tc.object, tc.old))
			r := a.review.Response
			if r.UID != "u-2" || r.Allowed != tc.allowed || (len(r.Patch) > 0) != tc.patched {
				t.Fatalf("uid %q allowed %v patch %s; want allowed %v patched %v\n%s", r.UID, r.Allowed, r.Patch, tc.allowed, tc.patched, a.raw)
			}
			if tc.code != 0 && (r.Result == nil || r.Result.Code != tc.code) {
				t.Errorf("result %+v, want code %d", r.Result, tc.code)
			}
			for _, m := range tc.message {
				if r.Result == nil || !strings.Contains(r.Result.Message, m) {
					t.Errorf("message lacks %q: %s", m, a.raw)
				}
			}
		})
	}
}

// rwxClaimFrom is rwxClaim with a data source, written out as a user would send it.
const rwxClaimFrom = `{"apiVersion":"v1","kind":"PersistentVolumeClaim",
  "metadata":{"name":"copy","namespace":"team-a"},
  "spec":{"accessModes":["ReadWriteMany"],"storageClassName":"fast","resources":{"requests":{"storage":"1Gi"}},%s}}`

// Clones and restores, as raw JSON: a clone of a ShareWarden claim or a restore of a snapshot is
// rewritten with its data source intact (the provisioner clones the source's backing claim, or
// restores the backing snapshot the snapshot stands for); anything the backing claim
// cannot reach from ShareWarden's namespace is refused with what works instead.
func TestClaimDataSources(t *testing.T) {
	cases := []struct {
		name, source string
		allowed      bool
		message      []string
	}{
		{name: "clone of a ShareWarden claim", source: `"dataSource":{"kind":"PersistentVolumeClaim","name":"shared"}`, allowed: true},
		{name: "clone of a ShareWarden claim by dataSourceRef", source: `"dataSourceRef":{"kind":"PersistentVolumeClaim","name":"shared"}`, allowed: true},
		{name: "clone of a ShareWarden claim backed by the managed class's default", source: `"dataSource":{"kind":"PersistentVolumeClaim","name":"legacy"}`, allowed: true},
		{name: "clone of an RWO claim", source: `"dataSource":{"kind":"PersistentVolumeClaim","name":"own"}`,
			message: []string{"spec.dataSource", `claim \"own\" is not a ShareWarden volume`, "clone a ShareWarden ReadWriteMany claim"}},
		{name: "clone of a missing claim", source: `"dataSource":{"kind":"PersistentVolumeClaim","name":"gone"}`,
			message: []string{"spec.dataSource.name", "does not exist"}},
		{name: "snapshot restore", source: `"dataSource":{"apiGroup":"snapshot.storage.k8s.io","kind":"VolumeSnapshot","name":"snap"}`, allowed: true},
		{name: "cross-namespace clone", source: `"dataSourceRef":{"kind":"PersistentVolumeClaim","name":"shared","namespace":"team-b"}`,
			message: []string{"spec.dataSourceRef.namespace", "another namespace"}},
		{name: "populator", source: `"dataSourceRef":{"apiGroup":"populator.example.com","kind":"Seed","name":"s"}`,
			message: []string{"Seed.populator.example.com", "volume populators"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, nil)
			obj := fmt.Sprintf(rwxClaimFrom, tc.source)
			a := post(t, s, webhook.PathClaims, review("u-3", "PersistentVolumeClaim", "CREATE", "team-a", "alice", obj, ""))
			r := a.review.Response
			if r.Allowed != tc.allowed {
				t.Fatalf("allowed %v, want %v: %s", r.Allowed, tc.allowed, a.raw)
			}
			if tc.allowed {
				var got corev1.PersistentVolumeClaim
				applyPatch(t, obj, r, &got)
				var want corev1.PersistentVolumeClaim
				if err := json.Unmarshal([]byte(obj), &want); err != nil {
					t.Fatal(err)
				}
				if *got.Spec.StorageClassName != v1alpha1.DefaultManagedStorageClass || got.Annotations[v1alpha1.AnnotationBackingStorageClass] != "fast" {
					t.Errorf("clone not rewritten: class %q annotations %v", *got.Spec.StorageClassName, got.Annotations)
				}
				if !equalJSON(t, got.Spec.DataSource, want.Spec.DataSource) || !equalJSON(t, got.Spec.DataSourceRef, want.Spec.DataSourceRef) {
					t.Errorf("data source changed: %s", r.Patch)
				}
				return
			}
			if r.Result == nil || r.Result.Code != 422 {
				t.Errorf("result %+v, want code 422", r.Result)
			}
			for _, m := range tc.message {
				if !strings.Contains(a.raw, m) {
					t.Errorf("message lacks %q: %s", m, a.raw)
				}
			}
		})
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

const podWithClaim = `{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"app-"},
  "spec":{"schedulerName":"default-scheduler","volumes":[{"name":"d","persistentVolumeClaim":{"claimName":"%s"}}],
  "containers":[{"name":"app","image":"app","resources":{}},{"name":"side","image":"side","resources":{}}]}}`

func TestPodMarked(t *testing.T) {
	s := newServer(t, nil)
	obj := fmt.Sprintf(podWithClaim, "shared")
	a := post(t, s, webhook.PathPods, review("p-1", "Pod", "CREATE", "team-a", "alice", obj, ""))
	r := a.review.Response
	if !r.Allowed || r.UID != "p-1" {
		t.Fatalf("%s", a.raw)
	}
	var got corev1.Pod
	applyPatch(t, obj, r, &got)
	if q := got.Spec.Containers[0].Resources.Limits[v1alpha1.ResourceConsumer]; q.String() != "1" {
		t.Errorf("first container's limits %v", got.Spec.Containers[0].Resources.Limits)
	}
	if q := got.Spec.Containers[0].Resources.Requests[v1alpha1.ResourceConsumer]; q.String() != "1" {
		t.Errorf("first container's requests %v", got.Spec.Containers[0].Resources.Requests)
	}
	if len(got.Spec.Containers[1].Resources.Limits) != 0 || got.Namespace != "" {
		t.Errorf("patch touched more than the first container's resources: %s", r.Patch)
	}

	a = post(t, s, webhook.PathPods, review("p-2", "Pod", "CREATE", "team-a", "alice", fmt.Sprintf(podWithClaim, "own"), ""))
	if !a.review.Response.Allowed || len(a.review.Response.Patch) != 0 {
		t.Errorf("pod with an ordinary claim: %s", a.raw)
	}
}

// A pod created right after its claim: the cache has not seen the claim, the API has.
func TestPodReadThrough(t *testing.T) {
	empty := fake.NewClientBuilder().WithScheme(scheme()).Build()
	api := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(clusterObjects()...).Build()
	counting := &countingReader{Reader: api}
	s := newServer(t, webhook.ReadThrough{Cache: empty, API: counting})
	a := post(t, s, webhook.PathPods, review("p", "Pod", "CREATE", "team-a", "alice", fmt.Sprintf(podWithClaim, "shared"), ""))
	if len(a.review.Response.Patch) == 0 {
		t.Fatalf("pod not marked when its claim is only in the API: %s", a.raw)
	}
	if counting.gets == 0 {
		t.Error("the API was never asked")
	}
}

type countingReader struct {
	client.Reader
	gets int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets++
	return c.Reader.Get(ctx, key, obj, opts...)
}

type failingReader struct{ client.Reader }

func (failingReader) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return errors.New("apiserver unreachable")
}

func TestLookupFailureIs500(t *testing.T) {
	s := newServer(t, failingReader{})
	a := post(t, s, webhook.PathClaims, review("u", "PersistentVolumeClaim", "CREATE", "team-a", "alice", rwxClaim, ""))
	r := a.review.Response
	if r.Allowed || r.Result.Code != 500 || !strings.Contains(r.Result.Message, "apiserver unreachable") {
		t.Errorf("%s", a.raw)
	}
}

func TestBadRequests(t *testing.T) {
	small := config()
	small.MaxRequestBytes = 2048
	reader := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(clusterObjects()...).Build()
	s, err := webhook.NewServer(context.Background(), small, reader)
	if err != nil {
		t.Fatal(err)
	}
	huge := review("u", "PersistentVolumeClaim", "CREATE", "team-a", "alice",
		strings.Replace(rwxClaim, `"team":"a"`, `"team":"`+strings.Repeat("a", 4096)+`"`, 1), "")
	cases := []struct {
		name, path, body string
		message          string
	}{
		{"empty body", webhook.PathClaims, "", "no request"},
		{"not JSON", webhook.PathClaims, "{nope", ""},
		{"truncated", webhook.PathPods, review("u", "Pod", "CREATE", "ns", "a", "{}", "")[:40], ""},
		{"oversized", webhook.PathClaims, huge, "too large"},
		{"no request", webhook.PathClaims, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, "no request"},
		{"wrong kind for the endpoint", webhook.PathClaims, review("u", "Pod", "CREATE", "team-a", "a", fmt.Sprintf(podWithClaim, "x"), ""), `not "Pod"`},
		{"claim sent to the pod endpoint", webhook.PathPods, review("u", "PersistentVolumeClaim", "CREATE", "team-a", "a", rwxClaim, ""), `not "PersistentVolumeClaim"`},
		{"no object", webhook.PathClaims, review("u", "PersistentVolumeClaim", "CREATE", "team-a", "a", "null", ""), "carries no PersistentVolumeClaim"},
		{"undecodable object", webhook.PathClaims, review("u", "PersistentVolumeClaim", "CREATE", "team-a", "a", `{"spec":{"accessModes":5}}`, ""), "decoding the PersistentVolumeClaim"},
		{"object of another kind", webhook.PathPods, review("u", "Pod", "CREATE", "team-a", "a", rwxClaim, ""), "want a Pod"},
		{"undecodable old object", webhook.PathClaims, review("u", "PersistentVolumeClaim", "UPDATE", "team-a", "a", rwxClaim, `{"metadata":"x"}`), "old object"},
		{"object is a string", webhook.PathPods, review("u", "Pod", "CREATE", "team-a", "a", `"pod"`, ""), "decoding the Pod"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := post(t, s, tc.path, tc.body)
			if a.httpStatus != http.StatusOK {
				if a.httpStatus != http.StatusBadRequest {
					t.Fatalf("HTTP %d: %s", a.httpStatus, a.raw)
				}
				return
			}
			r := a.review.Response
			if r.Allowed || r.Result == nil || r.Result.Code != http.StatusBadRequest {
				t.Fatalf("want a 400 review, got %s", a.raw)
			}
			if !strings.Contains(r.Result.Message, tc.message) {
				t.Errorf("message %q lacks %q", r.Result.Message, tc.message)
			}
		})
	}

	t.Run("GET", func(t *testing.T) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, webhook.PathClaims, nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("GET answered %d", rec.Code)
		}
	})
	t.Run("wrong content type", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, webhook.PathClaims, strings.NewReader(review("u", "PersistentVolumeClaim", "CREATE", "team-a", "a", rwxClaim, "")))
		req.Header.Set("Content-Type", "text/plain")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if !bytes.Contains(rec.Body.Bytes(), []byte(`"code":400`)) {
			t.Errorf("text/plain body answered %s", rec.Body.String())
		}
	})
}

func TestMetricsAndHealth(t *testing.T) {
	ready := false
	reader := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(clusterObjects()...).Build()
	s, err := webhook.NewServer(context.Background(), config(), reader, readyCheck{&ready})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	if code, _ := get("/readyz"); code == http.StatusOK {
		t.Error("/readyz OK before the caches synced")
	}
	ready = true
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d after sync: %s", code, body)
	}

	post(t, s, webhook.PathClaims, review("1", "PersistentVolumeClaim", "CREATE", "team-a", "a", rwxClaim, ""))
	post(t, s, webhook.PathClaims, review("2", "PersistentVolumeClaim", "CREATE", "team-a", "a",
		strings.Replace(rwxClaim, `"spec":{`, `"spec":{"volumeMode":"Block",`, 1), ""))
	post(t, s, webhook.PathPods, review("3", "Pod", "CREATE", "team-a", "a", fmt.Sprintf(podWithClaim, "own"), ""))
	post(t, s, webhook.PathPods, "{")

	_, body := get(webhook.PathMetrics)
	for _, want := range []string{
		webhook.MetricRequests + `{resource="persistentvolumeclaims"} 2`,
		webhook.MetricRequests + `{resource="pods"} 2`,
		webhook.MetricDenials + `{resource="persistentvolumeclaims"} 1`,
		webhook.MetricMutations + `{outcome="rewritten",resource="persistentvolumeclaims"} 1`,
		webhook.MetricLatency + `_count{resource="pods"} 2`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Two servers, two registries: nothing global.
	other := newServer(t, nil)
	if mfs, _ := other.Registry().Gather(); countOf(mfs, webhook.MetricRequests) != 0 {
		t.Error("a new server starts with requests already counted")
	}
}

func countOf(mfs []*dto.MetricFamily, name string) float64 {
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

type readyCheck struct{ ready *bool }

func (readyCheck) Name() string { return "test-sync" }
func (r readyCheck) Check(*http.Request) error {
	if !*r.ready {
		return errors.New("not synced")
	}
	return nil
}
