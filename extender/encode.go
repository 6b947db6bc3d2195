package extender

import (
	"encoding/json"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

// The answers carry one entry per node: they are written by hand, as encoding/json would write
// them (field names as in k8s.io/kube-scheduler/extender/v1, which has no JSON tags), without
// reflection or a sorted copy of each map.

// appendFilterResult appends an ExtenderFilterResult.
func appendFilterResult(b []byte, nodes *corev1.NodeList, names *[]string, failed, unresolvable extenderv1.FailedNodesMap) []byte {
	b = append(b, `{"Nodes":`...)
	if nodes == nil {
		b = append(b, "null"...)
	} else {
		raw, err := json.Marshal(nodes)
		if err != nil {
			raw = []byte("null") // a NodeList decoded from JSON always encodes again
		}
		b = append(b, raw...)
	}
	b = append(b, `,"NodeNames":`...)
	if names == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, n := range *names {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, n)
		}
		b = append(b, ']')
	}
	b = append(b, `,"FailedNodes":`...)
	b = appendFailed(b, failed)
	b = append(b, `,"FailedAndUnresolvableNodes":`...)
	b = appendFailed(b, unresolvable)
	return append(b, `,"Error":""}`...)
}

func appendFailed(b []byte, m extenderv1.FailedNodesMap) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, v)
	}
	return append(b, '}')
}

// appendPriorities appends a HostPriorityList.
func appendPriorities(b []byte, l extenderv1.HostPriorityList) []byte {
	b = append(b, '[')
	for i, hp := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Host":`...)
		b = appendString(b, hp.Host)
		b = append(b, `,"Score":`...)
		b = strconv.AppendInt(b, hp.Score, 10)
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendString appends s as a JSON string: node names and messages as they are when they need
// no escaping, anything else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			raw, _ := json.Marshal(s) // a string always encodes
			return append(b, raw...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
