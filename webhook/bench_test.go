package webhook_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sharewarden/sharewarden/webhook"
)

// The handlers' own cost, HTTP decoding to encoded answer, lookups served by an in-memory
// reader: go test ./webhook -run '^$' -bench Handler -benchmem
func BenchmarkHandlerClaimReview(b *testing.B) {
	benchmarkReview(b, webhook.PathClaims, review("u", "PersistentVolumeClaim", "CREATE", "team-a", "alice", rwxClaim, ""))
}

func BenchmarkHandlerPodReview(b *testing.B) {
	benchmarkReview(b, webhook.PathPods, review("u", "Pod", "CREATE", "team-a", "alice", fmt.Sprintf(podWithClaim, "shared"), ""))
}

func benchmarkReview(b *testing.B, path, body string) {
	s := newServer(b, nil)
	if a := post(b, s, path, body); len(a.review.Response.Patch) == 0 {
		b.Fatalf("benchmark request is not patched: %s", a.raw)
	}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
