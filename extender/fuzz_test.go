package extender

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// FuzzServeArgs feeds arbitrary bodies to both verbs: the answer is 200 with a decodable result
// or 400, never a panic. The seed corpus is in testdata/fuzz/FuzzServeArgs.
func FuzzServeArgs(f *testing.F) {
	for _, seed := range []string{
		`{"Pod":` + serverPodJSON + `,"NodeNames":["a1","b1","zz"]}`,
		`{"Pod":` + consumerPodJSON + `,"Nodes":{"Items":[{"metadata":{"name":"b1"}}]}}`,
		`{"Pod":` + plainPodJSON + `,"NodeNames":null}`,
		`{"Pod":{"spec":{"initContainers":[{"resources":{"limits":{"sharewarden.io/rwx-server":"1"}}}]}},"NodeNames":[""]}`,
		`{"Pod":{"spec":{"volumes":[{"name":"e","ephemeral":{}}],"containers":[{"resources":{"requests":{"sharewarden.io/rwx-consumer":"1"}}}]}},"Nodes":{"Items":[{"spec":{"taints":[{"key":"node.kubernetes.io/unreachable","effect":"NoExecute"}]}}]}}`,
		`null`, `{}`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	cfg := DefaultConfig()
	cfg.MaxRequestBytes = 1 << 20
	srv, err := NewServer(context.Background(), cfg, serverWorld())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, verb := range []string{VerbFilter, VerbPrioritize} {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/scheduler/"+verb, bytes.NewReader(body)))
			switch rec.Code {
			case http.StatusBadRequest:
			case http.StatusOK:
				var out any = &extenderv1.ExtenderFilterResult{}
				if verb == VerbPrioritize {
					out = &extenderv1.HostPriorityList{}
				}
				if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
					t.Fatalf("%s: 200 with an undecodable answer: %v", verb, err)
				}
				if verb == VerbPrioritize {
					for _, hp := range *out.(*extenderv1.HostPriorityList) {
						if hp.Score < extenderv1.MinExtenderPriority || hp.Score > extenderv1.MaxExtenderPriority {
							t.Fatalf("score %d out of range", hp.Score)
						}
					}
				}
			default:
				t.Fatalf("%s: status %d: %s", verb, rec.Code, rec.Body.String())
			}
		}
	})
}
