package observability_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/test/fixture"
)

// TestPodMonitors: one PodMonitor per component that serves /metrics, each selecting exactly
// that component's pods and scraping a port those pods name: the rendered Deployments', and for
// the NFS servers the pod the controller builds (provisioner.ServerPod).
func TestPodMonitors(t *testing.T) {
	objs := render(t, monitoringOn...)
	pods := map[string]*corev1.PodTemplateSpec{}
	for _, d := range fixture.OfKind(objs, "Deployment") {
		var tmpl corev1.PodTemplateSpec
		spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template")
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &tmpl); err != nil {
			t.Fatal(err)
		}
		pods[d.GetName()] = &tmpl
	}
	server := provisioner.ServerPod(provisioner.Volume{
		Claim:     &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "data", UID: types.UID("uid-1")}},
		Namespace: "sharewarden-system",
		Server:    provisioner.ServerConfig{HealthPort: 9090, ExportPath: "/export"},
	})
	pods["sharewarden-nfs-server"] = &corev1.PodTemplateSpec{ObjectMeta: server.ObjectMeta, Spec: server.Spec}

	monitors := fixture.OfKind(objs, "PodMonitor")
	if len(monitors) != 4 {
		t.Fatalf("%d PodMonitors, want 4 (controller, webhook, extender, nfs-server)", len(monitors))
	}
	for _, m := range monitors {
		var spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			NamespaceSelector struct {
				MatchNames []string `json:"matchNames"`
			} `json:"namespaceSelector"`
			Endpoints []struct {
				Port   string `json:"port"`
				Path   string `json:"path"`
				Scheme string `json:"scheme"`
			} `json:"podMetricsEndpoints"`
		}
		raw, _, _ := unstructured.NestedMap(m.Object, "spec")
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
			t.Fatal(err)
		}
		if len(spec.NamespaceSelector.MatchNames) != 1 || spec.NamespaceSelector.MatchNames[0] != "sharewarden-system" {
			t.Errorf("%s: namespaces %v, want the release namespace", m.GetName(), spec.NamespaceSelector.MatchNames)
		}
		var selected []string
		for name, p := range pods {
			match := len(spec.Selector.MatchLabels) > 0
			for k, v := range spec.Selector.MatchLabels {
				if p.Labels[k] != v {
					match = false
				}
			}
			if match {
				selected = append(selected, name)
			}
		}
		if len(selected) != 1 || selected[0] != m.GetName() {
			t.Errorf("PodMonitor %s selects %v, want only its own pods", m.GetName(), selected)
			continue
		}
		p := pods[selected[0]]
		if len(spec.Endpoints) != 1 || spec.Endpoints[0].Path != "/metrics" {
			t.Fatalf("%s: endpoints %+v", m.GetName(), spec.Endpoints)
		}
		var ports []string
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				ports = append(ports, cp.Name)
			}
		}
		found := false
		for _, name := range ports {
			found = found || name == spec.Endpoints[0].Port
		}
		if !found {
			t.Errorf("%s scrapes port %q; its pods have %v", m.GetName(), spec.Endpoints[0].Port, ports)
		}
		if m.GetName() == "sharewarden-webhook" && spec.Endpoints[0].Scheme != "https" {
			t.Errorf("the webhook serves /metrics over HTTPS only; scheme %q", spec.Endpoints[0].Scheme)
		}
	}
}
