package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
)

// Apply server-side applies every object in the YAML documents (as field manager "sharewarden-test"),
// in order, and returns them as applied. Objects without a namespace that need one go to defaultNS.
func (c *Cluster) Apply(ctx context.Context, defaultNS string, manifests ...[]byte) ([]*unstructured.Unstructured, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(c.restConfig)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(c.restConfig)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, m := range manifests {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m), 4096)
		for {
			obj := &unstructured.Unstructured{}
			if err := dec.Decode(&obj.Object); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return out, fmt.Errorf("decoding manifest: %w", err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			gvk := obj.GroupVersionKind()
			mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				mapper.Reset() // a CRD applied earlier in the same call
				if mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
					return out, fmt.Errorf("mapping %s: %w", gvk, err)
				}
			}
			ri := dyn.Resource(mapping.Resource)
			var target dynamic.ResourceInterface = ri
			if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
				if obj.GetNamespace() == "" {
					obj.SetNamespace(defaultNS)
				}
				target = ri.Namespace(obj.GetNamespace())
			}
			data, err := obj.MarshalJSON()
			if err != nil {
				return out, fmt.Errorf("encoding %s %s: %w", gvk.Kind, obj.GetName(), err)
			}
			got, err := target.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "sharewarden-test", Force: ptrTrue()})
			if err != nil {
				return out, fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
			}
			out = append(out, got)
		}
	}
	return out, nil
}

// ApplyFiles applies the YAML files at paths.
func (c *Cluster) ApplyFiles(ctx context.Context, defaultNS string, paths ...string) ([]*unstructured.Unstructured, error) {
	var ms [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		ms = append(ms, b)
	}
	return c.Apply(ctx, defaultNS, ms...)
}

func ptrTrue() *bool { b := true; return &b }
