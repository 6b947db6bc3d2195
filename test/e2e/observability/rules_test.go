package observability_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sharewarden/sharewarden/test/fixture"
)

// rulesFile renders the chart's PrometheusRule with extra flags and returns its spec (the
// rule groups, as a Prometheus rules file) and the alerts' expressions by name.
func rulesFile(t *testing.T, extra ...string) ([]byte, map[string]string) {
	t.Helper()
	rules := fixture.OfKind(render(t, append([]string{"--set", "monitoring.rules.enabled=true"}, extra...)...), "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules rendered, want 1", len(rules))
	}
	spec := rules[0].Object["spec"]
	data, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
				For   string `json:"for"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(data, &parsed); err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{}
	for _, g := range parsed.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr + "\nfor " + r.For
		}
	}
	return data, exprs
}

// TestAlertRules: the rendered rules pass `promtool check rules` and the unit tests in
// testdata/alerts_test.yaml, name only registered metrics, and cover every alert the issue asks.
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool", "hack/promtool.sh")
	data, exprs := rulesFile(t)
	if strings.Contains(string(data), "__") {
		t.Errorf("a placeholder was left in the rules:\n%s", data)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, dir, promtool, "check", "rules", "rules.yaml"); err != nil {
		t.Errorf("promtool check rules: %v", err)
	} else {
		t.Logf("%s", out)
	}
	if out, err := run(t, dir, promtool, "test", "rules", "alerts_test.yaml"); err != nil {
		t.Errorf("promtool test rules: %v", err)
	} else {
		t.Logf("%s", out)
	}

	names := registered(t)
	for alert, expr := range exprs {
		expr, _, _ = strings.Cut(expr, "\nfor ") // the rule's for clause, appended by rulesFile
		used := metricNames(expr)
		if len(used) == 0 {
			t.Errorf("%s: no metric in %q", alert, expr)
		}
		for _, n := range used {
			if !known(names, n) {
				t.Errorf("%s uses %s, which no ShareWarden component registers", alert, n)
			}
		}
		// Every alert is unit-tested.
		if !strings.Contains(string(tests), "alertname: "+alert+"\n") {
			t.Errorf("%s has no promtool unit test in testdata/alerts_test.yaml", alert)
		}
	}
	for _, want := range []string{"ShareWardenVolumeNotReady", "ShareWardenVolumeFailover", "ShareWardenLeaseRenewFailing",
		"ShareWardenExportFull", "ShareWardenExportOutOfInodes", "ShareWardenNodeFenced", "ShareWardenWebhookErrors", "ShareWardenExtenderBadRequests"} {
		if _, ok := exprs[want]; !ok {
			t.Errorf("no %s alert", want)
		}
	}
}

// TestAlertThresholdsFollowValues: the monitoring.rules values reach the rules.
func TestAlertThresholdsFollowValues(t *testing.T) {
	_, exprs := rulesFile(t, "--set", "monitoring.rules.exportFullPercent=70", "--set", "monitoring.rules.inodesFullPercent=90",
		"--set", "monitoring.rules.volumeNotReadyFor=3m", "--set", "monitoring.rules.nodeFencedFor=1h", "--set", "monitoring.rules.leaseRenewFailures=5")
	for alert, want := range map[string]string{
		"ShareWardenExportFull":        ">= 70\n",
		"ShareWardenExportOutOfInodes": ">= 90\n",
		"ShareWardenVolumeNotReady":    "for 3m",
		"ShareWardenNodeFenced":        "for 1h",
		"ShareWardenLeaseRenewFailing": ">= 5\n",
	} {
		if !strings.Contains(exprs[alert], want) {
			t.Errorf("%s: %q lacks %q", alert, exprs[alert], want)
		}
	}
	// A bad value is refused by the schema, with the value's name.
	h := pinnedHelm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := h.Run(ctx, "template", "sharewarden", chartDir, "--set", "monitoring.rules.exportFullPercent=150")
	if err == nil || !strings.Contains(err.Error(), "exportFullPercent") {
		t.Errorf("exportFullPercent=150 not refused by name: %v", err)
	}
}
