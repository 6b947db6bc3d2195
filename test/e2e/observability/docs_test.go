package observability_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsListEveryMetricAndAlert: docs/observability.md has a row for every ShareWarden metric
// the components register, names no metric they do not, and has a section for every alert.
func TestDocsListEveryMetricAndAlert(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	names := registered(t)
	for n, component := range names {
		if !strings.HasPrefix(n, "sharewarden_") {
			continue
		}
		if !strings.Contains(doc, "| `"+n+"` |") {
			t.Errorf("docs/observability.md has no table row for %s (%s)", n, component)
		}
	}
	for _, m := range regexp.MustCompile("`(sharewarden_[a-z0-9_]+)`").FindAllStringSubmatch(doc, -1) {
		if !known(names, m[1]) {
			t.Errorf("docs/observability.md names %s, which no component registers", m[1])
		}
	}
	rules, err := os.ReadFile(filepath.Join(chartDir, "files", "prometheus-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\S+)`).FindAllStringSubmatch(string(rules), -1) {
		if !strings.Contains(doc, "### "+m[1]+"\n") {
			t.Errorf("docs/observability.md has no section for alert %s (its runbook_url points there)", m[1])
		}
		if !strings.Contains(string(rules), "observability.md#"+strings.ToLower(m[1])+"\"") {
			t.Errorf("alert %s has no runbook_url to its section", m[1])
		}
	}
}
