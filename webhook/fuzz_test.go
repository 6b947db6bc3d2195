package webhook_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/sharewarden/sharewarden/webhook"
)

// FuzzAdmissionReview posts arbitrary bodies to both endpoints. Whatever arrives, the answer
// is an HTTP 400 or an AdmissionReview with a response; never a recovered panic or a 500 (the
// fake cluster never fails); and a patch always applies to the request's object. Seeds live in
// testdata/fuzz; run: go test ./webhook -run '^$' -fuzz FuzzAdmissionReview -fuzztime 60s
func FuzzAdmissionReview(f *testing.F) {
	s := newServer(f, nil)
	f.Fuzz(func(t *testing.T, body []byte, toPods bool) {
		path := webhook.PathClaims
		if toPods {
			path = webhook.PathPods
		}
		a := post(t, s, path, string(body))
		if a.httpStatus != http.StatusOK {
			if a.httpStatus != http.StatusBadRequest {
				t.Fatalf("HTTP %d: %s", a.httpStatus, a.raw)
			}
			return
		}
		r := a.review.Response
		if r.Result != nil && (r.Result.Code >= 500 || strings.Contains(r.Result.Message, "[recovered]")) {
			t.Fatalf("server error for %q: %s", body, a.raw)
		}
		if len(r.Patch) == 0 {
			return
		}
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &ar); err != nil || ar.Request == nil {
			t.Fatalf("patched a request that does not decode: %v", err)
		}
		p, err := jsonpatch.DecodePatch(r.Patch)
		if err != nil {
			t.Fatalf("undecodable patch %s: %v", r.Patch, err)
		}
		if _, err := p.Apply(ar.Request.Object.Raw); err != nil {
			t.Fatalf("patch %s does not apply to %s: %v", r.Patch, ar.Request.Object.Raw, err)
		}
	})
}
