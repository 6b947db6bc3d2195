package extender

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// The shipped scheduler configurations must call this extender the way it serves.
func TestShippedSchedulerConfigs(t *testing.T) {
	// plugin-scheduler-config.yaml calls no extender: extender/plugin checks it.
	files := []string{filepath.Join("..", "deploy", "scheduler", "kube-scheduler-config.yaml"), filepath.Join("..", "deploy", "scheduler", "second-scheduler-config.yaml")}
	type extenderCfg struct {
		URLPrefix        string `json:"urlPrefix"`
		FilterVerb       string `json:"filterVerb"`
		PrioritizeVerb   string `json:"prioritizeVerb"`
		PreemptVerb      string `json:"preemptVerb"`
		BindVerb         string `json:"bindVerb"`
		Weight           int    `json:"weight"`
		NodeCacheCapable bool   `json:"nodeCacheCapable"`
		HTTPTimeout      string `json:"httpTimeout"`
		Ignorable        *bool  `json:"ignorable"`
		EnableHTTPS      bool   `json:"enableHTTPS"`
		TLSConfig        *struct {
			CAFile string `json:"caFile"`
		} `json:"tlsConfig"`
		ManagedResources []struct {
			Name               string `json:"name"`
			IgnoredByScheduler bool   `json:"ignoredByScheduler"`
		} `json:"managedResources"`
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				APIVersion string        `json:"apiVersion"`
				Kind       string        `json:"kind"`
				Extenders  []extenderCfg `json:"extenders"`
				Profiles   []struct {
					SchedulerName            string `json:"schedulerName"`
					PercentageOfNodesToScore *int32 `json:"percentageOfNodesToScore"`
				} `json:"profiles"`
			}
			if err := yaml.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.APIVersion != "kubescheduler.config.k8s.io/v1" || doc.Kind != "KubeSchedulerConfiguration" || len(doc.Extenders) != 1 {
				t.Fatalf("not a v1 KubeSchedulerConfiguration with one extender: %+v", doc)
			}
			// The cluster's own scheduler keeps its one profile; the second scheduler has the
			// consumers' (adaptive sample) and the servers' (every node scored, so a server's data
			// nodes are always in the sample), the names the chart gives the webhook.
			var profiles []string
			for _, p := range doc.Profiles {
				pct := "adaptive"
				if p.PercentageOfNodesToScore != nil {
					pct = fmt.Sprint(*p.PercentageOfNodesToScore)
				}
				profiles = append(profiles, p.SchedulerName+"="+pct)
			}
			want := map[string]string{
				"kube-scheduler-config.yaml":   "default-scheduler=adaptive",
				"second-scheduler-config.yaml": "sharewarden-scheduler=adaptive sharewarden-server-scheduler=100",
			}[filepath.Base(f)]
			if got := strings.Join(profiles, " "); got != want {
				t.Errorf("profiles %q, want %q", got, want)
			}
			e := doc.Extenders[0]
			if e.FilterVerb != VerbFilter || e.PrioritizeVerb != VerbPrioritize || e.PreemptVerb != "" || e.BindVerb != "" {
				t.Errorf("verbs %q %q %q %q", e.FilterVerb, e.PrioritizeVerb, e.PreemptVerb, e.BindVerb)
			}
			if !strings.HasPrefix(e.URLPrefix, "https://") || !strings.HasSuffix(e.URLPrefix, DefaultURLPrefix) || !strings.Contains(e.URLPrefix, ":9445/") {
				t.Errorf("urlPrefix %q: want https on the default port and prefix", e.URLPrefix)
			}
			if !e.NodeCacheCapable || e.Weight < 1 || e.HTTPTimeout == "" || e.Ignorable == nil || !e.EnableHTTPS || e.TLSConfig == nil || e.TLSConfig.CAFile == "" {
				t.Errorf("nodeCacheCapable, weight, httpTimeout, ignorable, enableHTTPS, tlsConfig.caFile must all be set: %+v", e)
			}
			var managed []string
			for _, r := range e.ManagedResources {
				if !r.IgnoredByScheduler {
					t.Errorf("%s must be ignoredByScheduler: nodes have no such resource", r.Name)
				}
				managed = append(managed, r.Name)
			}
			slices.Sort(managed)
			if want := []string{string(swv1.ResourceConsumer), string(swv1.ResourceServer)}; !slices.Equal(managed, want) {
				t.Errorf("managedResources %v, want %v", managed, want)
			}
		})
	}
}
