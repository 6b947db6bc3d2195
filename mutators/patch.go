package mutators

import (
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
	mattbaird "github.com/mattbaird/jsonpatch"
)

// JSONPatch returns the RFC 6902 patch that turns original into mutated, both encoded as JSON
// from their Go types. Diffing the two typed encodings (rather than the raw request) keeps the
// patch to what the mutator changed: fields this build does not know survive untouched.
func JSONPatch(original, mutated any) ([]byte, error) {
	a, err := json.Marshal(original)
	if err != nil {
		return nil, fmt.Errorf("encoding the original object: %w", err)
	}
	b, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("encoding the mutated object: %w", err)
	}
	ops, err := mattbaird.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("diffing original and mutated object: %w", err)
	}
	if len(ops) == 0 {
		return nil, nil
	}
	out, err := json.Marshal(ops)
	if err != nil {
		return nil, fmt.Errorf("encoding the patch: %w", err)
	}
	return out, nil
}

// PatchFor returns the patch to send for raw, the object as the request carried it, when the
// mutator turned original (raw decoded) into mutated. It is the typed diff (see JSONPatch)
// whenever that applies to raw, which is always the case for objects the apiserver sends;
// otherwise (raw lacks a parent the diff adds to) it is the diff from raw itself.
func PatchFor(raw []byte, original, mutated any) ([]byte, error) {
	patch, err := JSONPatch(original, mutated)
	if err != nil || patch == nil {
		return patch, err
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, fmt.Errorf("decoding our own patch: %w", err)
	}
	if _, err := p.Apply(raw); err == nil {
		return patch, nil
	}
	b, err := json.Marshal(mutated)
	if err != nil {
		return nil, fmt.Errorf("encoding the mutated object: %w", err)
	}
	ops, err := mattbaird.CreatePatch(raw, b)
	if err != nil {
		return nil, fmt.Errorf("diffing the request's object and the mutated object: %w", err)
	}
	return json.Marshal(ops)
}
