package mutators

import (
	"encoding/json"
	"fmt"

	"github.com/mattbaird/jsonpatch"
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
	ops, err := jsonpatch.CreatePatch(a, b)
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
