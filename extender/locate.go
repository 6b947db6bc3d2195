package extender

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// Location is where a backing volume can be reached from and where its data lives, as the
// data locators found it on its PV. It is computed once per PV change.
type Location struct {
	// Reach lists node selectors that must all match a node for it to reach the volume; none
	// means any node can.
	Reach []*NodeSelector
	// DataNodes hold the data (a local disk, or replicas), sorted.
	DataNodes []string
	// DataSegments are topology segments (node label = value) that hold the data: a node in one
	// of them is near it.
	DataSegments []Segment
}

// Segment is a topology segment: the nodes whose label Key has Value.
type Segment struct{ Key, Value string }

// Reaches tells whether node can reach the volume.
func (l *Location) Reaches(n *NodeInfo) bool {
	for _, s := range l.Reach {
		if !s.Match(n) {
			return false
		}
	}
	return true
}

// DataLevel is 2 on a node holding the data, 1 on a node in a segment holding it, else 0.
func (l *Location) DataLevel(n *NodeInfo) int {
	for _, d := range l.DataNodes {
		if d == n.Name {
			return 2
		}
	}
	for _, s := range l.DataSegments {
		if v, ok := n.Labels[s.Key]; ok && v == s.Value {
			return 1
		}
	}
	return 0
}

// DataLocator finds, on a backing volume's PV, where it can be reached and where its data
// lives. Storage-specific locators (e.g. one reading Longhorn replicas) implement it too.
type DataLocator interface {
	// Name names the locator in logs.
	Name() string
	// Locate adds what it knows of pv to loc. It must not keep or modify pv.
	Locate(pv *corev1.PersistentVolume, loc *Location)
}

// DefaultLocators are the built-in locators: PV node affinity, CSI topology segments and the
// sharewarden.io/data-nodes annotation.
func DefaultLocators() []DataLocator {
	return []DataLocator{NodeAffinityLocator{}, CSITopologyLocator{}, AnnotationLocator{}}
}

// Locate runs every locator over pv.
func Locate(pv *corev1.PersistentVolume, locators []DataLocator) *Location {
	loc := &Location{}
	for _, l := range locators {
		l.Locate(pv, loc)
	}
	slices.Sort(loc.DataNodes)
	loc.DataNodes = slices.Compact(loc.DataNodes)
	return loc
}

// NodeAffinityLocator: a PV's required node affinity says which nodes reach it; the hostnames
// it pins (a local disk) hold its data.
type NodeAffinityLocator struct{}

// Name implements DataLocator.
func (NodeAffinityLocator) Name() string { return "node-affinity" }

// Locate implements DataLocator.
func (NodeAffinityLocator) Locate(pv *corev1.PersistentVolume, loc *Location) {
	req := requiredAffinity(pv)
	if req == nil {
		return
	}
	loc.Reach = append(loc.Reach, CompileNodeSelector(req))
	for _, t := range req.NodeSelectorTerms {
		for _, e := range t.MatchExpressions {
			if e.Key == corev1.LabelHostname && e.Operator == corev1.NodeSelectorOpIn {
				loc.DataNodes = append(loc.DataNodes, e.Values...)
			}
		}
		for _, f := range t.MatchFields {
			if f.Key == metadataName && f.Operator == corev1.NodeSelectorOpIn {
				loc.DataNodes = append(loc.DataNodes, f.Values...)
			}
		}
	}
}

// CSITopologyLocator: a CSI volume's node affinity carries the topology segments its driver
// reported (e.g. a zone); nodes in those segments are near the data.
type CSITopologyLocator struct{}

// Name implements DataLocator.
func (CSITopologyLocator) Name() string { return "csi-topology" }

// Locate implements DataLocator.
func (CSITopologyLocator) Locate(pv *corev1.PersistentVolume, loc *Location) {
	req := requiredAffinity(pv)
	if pv.Spec.CSI == nil || req == nil {
		return
	}
	for _, t := range req.NodeSelectorTerms {
		for _, e := range t.MatchExpressions {
			if e.Key == corev1.LabelHostname || e.Operator != corev1.NodeSelectorOpIn {
				continue
			}
			for _, v := range e.Values {
				loc.DataSegments = append(loc.DataSegments, Segment{Key: e.Key, Value: v})
			}
		}
	}
}

// AnnotationLocator reads the nodes holding replicas from the PV's sharewarden.io/data-nodes
// annotation.
type AnnotationLocator struct{}

// Name implements DataLocator.
func (AnnotationLocator) Name() string { return "data-nodes-annotation" }

// Locate implements DataLocator.
func (AnnotationLocator) Locate(pv *corev1.PersistentVolume, loc *Location) {
	for n := range strings.SplitSeq(pv.Annotations[swv1.AnnotationDataNodes], ",") {
		if n = strings.TrimSpace(n); n != "" {
			loc.DataNodes = append(loc.DataNodes, n)
		}
	}
}

func requiredAffinity(pv *corev1.PersistentVolume) *corev1.NodeSelector {
	if pv.Spec.NodeAffinity == nil {
		return nil
	}
	return pv.Spec.NodeAffinity.Required
}

const metadataName = "metadata.name"

// NodeSelector is a compiled corev1.NodeSelector: terms are ORed, a term's requirements ANDed,
// as the scheduler reads them. A term that does not compile matches no node.
type NodeSelector struct{ terms []nodeTerm }

type nodeTerm struct {
	labels   labels.Selector
	names    []string // metadata.name In
	notNames []string // metadata.name NotIn
	invalid  bool
}

var nodeSelectorOps = map[corev1.NodeSelectorOperator]selection.Operator{
	corev1.NodeSelectorOpIn:           selection.In,
	corev1.NodeSelectorOpNotIn:        selection.NotIn,
	corev1.NodeSelectorOpExists:       selection.Exists,
	corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
	corev1.NodeSelectorOpGt:           selection.GreaterThan,
	corev1.NodeSelectorOpLt:           selection.LessThan,
}

// CompileNodeSelector compiles ns once, so matching a node costs no allocation.
func CompileNodeSelector(ns *corev1.NodeSelector) *NodeSelector {
	s := &NodeSelector{}
	for _, t := range ns.NodeSelectorTerms {
		var term nodeTerm
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			continue // an empty term matches nothing, and so is left out
		}
		sel := labels.NewSelector()
		for _, e := range t.MatchExpressions {
			op, ok := nodeSelectorOps[e.Operator]
			if !ok {
				term.invalid = true
				break
			}
			r, err := labels.NewRequirement(e.Key, op, e.Values)
			if err != nil {
				term.invalid = true
				break
			}
			sel = sel.Add(*r)
		}
		for _, f := range t.MatchFields {
			switch {
			case f.Key == metadataName && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1:
				term.names = append(term.names, f.Values...)
			case f.Key == metadataName && f.Operator == corev1.NodeSelectorOpNotIn:
				term.notNames = append(term.notNames, f.Values...)
			default:
				term.invalid = true
			}
		}
		term.labels = sel
		s.terms = append(s.terms, term)
	}
	return s
}

// Match tells whether n satisfies the selector.
func (s *NodeSelector) Match(n *NodeInfo) bool {
	for i := range s.terms {
		t := &s.terms[i]
		if t.invalid || (len(t.names) > 0 && !slices.Contains(t.names, n.Name)) || slices.Contains(t.notNames, n.Name) {
			continue
		}
		if t.labels.Matches(labels.Set(n.Labels)) {
			return true
		}
	}
	return false
}

// String describes the selector for logs.
func (s *NodeSelector) String() string {
	parts := make([]string, 0, len(s.terms))
	for _, t := range s.terms {
		parts = append(parts, fmt.Sprintf("{%s names=%v !names=%v invalid=%v}", t.labels, t.names, t.notNames, t.invalid))
	}
	return strings.Join(parts, " OR ")
}
