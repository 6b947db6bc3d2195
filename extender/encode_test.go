package extender

import (
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// The hand-written answers decode to what encoding/json's would.
func TestEncodeMatchesEncodingJSON(t *testing.T) {
	names := []string{"a1", "node-\"quoted\"", "ünïcode", "tab\there", "<html>&"}
	failed := extenderv1.FailedNodesMap{"x": msgFenced, "y\\z": "why \"not\""}
	list := &corev1.NodeList{Items: []corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"k": "v"}}}}}
	for _, want := range []*extenderv1.ExtenderFilterResult{
		{NodeNames: &names, FailedNodes: failed},
		{Nodes: list, FailedAndUnresolvableNodes: failed},
		{NodeNames: &[]string{}},
		{},
	} {
		got := appendFilterResult(nil, want.Nodes, want.NodeNames, want.FailedNodes, want.FailedAndUnresolvableNodes)
		var dec extenderv1.ExtenderFilterResult
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if !reflect.DeepEqual(&dec, want) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", got, dec, want)
		}
	}
	scores := extenderv1.HostPriorityList{{Host: "a1", Score: 10}, {Host: "é\"", Score: 0}}
	var dec extenderv1.HostPriorityList
	if err := json.Unmarshal(appendPriorities(nil, scores), &dec); err != nil || !reflect.DeepEqual(dec, scores) {
		t.Errorf("priorities: %v %v", dec, err)
	}
	if got := string(appendPriorities(nil, nil)); got != "[]" {
		t.Errorf("empty priorities: %s", got)
	}
}

func TestDecodeNamesMatchesEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		`[]`, ` [ ] `, `["a"]`, `["a","b-1.x"]`, "[ \"a\" ,\n\t\"b\" ]", `["é",""]`, `["a\"b","c"]`, `["\u0041"]`, `["a\\"]`,
		`[1]`, `["a",1]`, `{}`, `"a"`, `[null]`,
	} {
		var want []string
		wantErr := json.Unmarshal([]byte(raw), &want)
		if wantErr == nil && want == nil {
			want = []string{}
		}
		got, err := decodeNames(json.RawMessage(raw))
		if (err != nil) != (wantErr != nil) || (err == nil && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s: got %q (%v), want %q (%v)", raw, got, err, want, wantErr)
		}
	}
}
