package mutators_test

import (
	"encoding/json"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"

	"github.com/sharewarden/sharewarden/mutators"
)

// The fuzz targets decode an object from JSON, run the mutator with facts chosen by variant,
// and check the contract the webhook relies on: no panic, the input left alone, only denials
// as errors, and the JSON patch of (original, mutated), applied to the original, yielding
// exactly the mutated object. Seeds live in testdata/fuzz; run e.g.
//
//	go test ./mutators -run '^$' -fuzz FuzzMutateClaim -fuzztime 60s

func claimFactsFor(variant byte) mutators.ClaimFacts {
	f := facts()
	if variant&1 != 0 {
		f.DefaultClass = "slow"
	}
	if variant&2 != 0 {
		f.Privileged = true
	}
	if variant&4 != 0 {
		f.Classes[managed].Parameters = nil
	}
	if variant&8 != 0 {
		f.Claims = map[string]*corev1.PersistentVolumeClaim{
			"src":    claim(on(managed), annotated("sharewarden.io/backing-storage-class", "fast")),
			"shared": claim(on(managed), annotated("sharewarden.io/backing-storage-class", "slow")),
			"rwo":    claim(on("fast"), modes(corev1.ReadWriteOnce)),
		}
	}
	if variant&16 != 0 {
		f.Old = claim(on(managed), annotated("sharewarden.io/backing-storage-class", "fast"))
	}
	return f
}

func podFactsFor(variant byte) mutators.PodFacts {
	f := podFacts()
	if variant&1 != 0 {
		f.SchedulerName = "sharewarden-scheduler"
	}
	if variant&2 != 0 {
		f.DefaultClass = "fast"
	}
	if variant&4 != 0 {
		f.SystemNamespace = "team-a"
	}
	return f
}

func FuzzMutateClaim(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, variant byte) {
		var pvc corev1.PersistentVolumeClaim
		if err := json.Unmarshal(data, &pvc); err != nil {
			t.Skip()
		}
		before := mustJSON(t, &pvc)
		res, err := mutators.MutateClaim(&pvc, claimFactsFor(variant))
		if string(mustJSON(t, &pvc)) != string(before) {
			t.Fatal("MutateClaim modified its input")
		}
		if err != nil {
			if _, ok := mutators.AsDenied(err); !ok {
				t.Fatalf("error that is not a denial: %v", err)
			}
			return
		}
		checkPatch(t, &pvc, res.Claim, res.Changed)
		if res.Changed {
			again, err := mutators.MutateClaim(res.Claim, claimFactsFor(variant))
			if err != nil || again.Changed {
				t.Fatalf("mutating the result again: changed=%v err=%v", again.Changed, err)
			}
		}
	})
}

func FuzzMutatePod(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, variant byte) {
		var pod corev1.Pod
		if err := json.Unmarshal(data, &pod); err != nil {
			t.Skip()
		}
		before := mustJSON(t, &pod)
		res, err := mutators.MutatePod(&pod, podFactsFor(variant))
		if string(mustJSON(t, &pod)) != string(before) {
			t.Fatal("MutatePod modified its input")
		}
		if err != nil {
			if _, ok := mutators.AsDenied(err); !ok {
				t.Fatalf("error that is not a denial: %v", err)
			}
			return
		}
		checkPatch(t, &pod, res.Pod, res.Changed)
		if res.Changed {
			again, err := mutators.MutatePod(res.Pod, podFactsFor(variant))
			if err != nil || again.Changed {
				t.Fatalf("mutating the result again: changed=%v err=%v", again.Changed, err)
			}
		}
	})
}

// checkPatch: the patch from original to mutated, applied to original, gives mutated; and an
// unchanged result is the very input with an empty patch.
func checkPatch[T any](t *testing.T, original, mutated *T, changed bool) {
	t.Helper()
	patch, err := mutators.JSONPatch(original, mutated)
	if err != nil {
		t.Fatalf("JSONPatch: %v", err)
	}
	if !changed {
		if mutated != original {
			t.Fatal("unchanged result is not the input")
		}
		if len(patch) != 0 {
			t.Fatalf("unchanged result with a patch: %s", patch)
		}
		return
	}
	if len(patch) == 0 {
		t.Fatal("changed result without a patch")
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decoding patch %s: %v", patch, err)
	}
	orig := mustJSON(t, original)
	got, err := p.Apply(orig)
	if err != nil {
		t.Fatalf("applying patch %s to %s: %v", patch, orig, err)
	}
	var gotV, wantV any
	if err := json.Unmarshal(got, &gotV); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustJSON(t, mutated), &wantV); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotV, wantV) {
		t.Fatalf("patch %s applied to the original gives\n%s\nwant\n%s", patch, got, mustJSON(t, mutated))
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
