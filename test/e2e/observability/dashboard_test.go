package observability_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sharewarden/sharewarden/test/fixture"
)

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
			Multi bool   `json:"multi"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Repeat  string `json:"repeat"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func readDashboard(t *testing.T) (dashboard, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir, "files", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d, data
}

// TestDashboard: the dashboard parses, repeats a row per volume with the panels the issue asks
// for, and every query (panels and variables) names only metrics ShareWarden registers.
func TestDashboard(t *testing.T) {
	d, _ := readDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard needs a uid and title: %q %q", d.UID, d.Title)
	}
	names := registered(t)
	check := func(where, expr string) {
		used := metricNames(expr)
		if len(used) == 0 {
			t.Errorf("%s: no metric in %q", where, expr)
		}
		for _, n := range used {
			if !known(names, n) {
				t.Errorf("%s queries %s, which no ShareWarden component registers", where, n)
			}
		}
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Multi
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		expr, _ := q["query"].(string)
		// label_values(metric, label) and query_result(expr): the label is not a metric.
		if inner, ok := strings.CutPrefix(expr, "label_values("); ok {
			expr = inner[:strings.LastIndex(inner, ",")]
		} else if inner, ok := strings.CutPrefix(expr, "query_result("); ok {
			expr = strings.TrimSuffix(inner, ")")
		}
		check("variable "+v.Name, expr)
	}
	if !vars["volume"] {
		t.Error("no multi-value volume variable to repeat rows over")
	}
	ids := map[int]bool{}
	var repeated bool
	titles := map[string]bool{}
	for i, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			if p.Repeat == "volume" {
				repeated = true
				// The row's panels follow it up to the next row.
				for _, q := range d.Panels[i+1:] {
					if q.Type == "row" {
						break
					}
					titles[q.Title] = true
				}
			}
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
	if !repeated {
		t.Error("no row repeated per volume")
	}
	for _, want := range []string{"Phase", "Server node", "Clients / consumers", "NFS I/O", "Fullness", "Failovers"} {
		if !titles[want] {
			t.Errorf("the per-volume row has no %q panel (has %v)", want, titles)
		}
	}
}

// TestDashboardConfigMap: the chart ships the dashboard file unchanged, labelled for the
// Grafana sidecar; nothing of monitoring renders by default.
func TestDashboardConfigMap(t *testing.T) {
	_, file := readDashboard(t)
	objs := render(t, monitoringOn...)
	var found bool
	for _, cm := range fixture.OfKind(objs, "ConfigMap") {
		data, ok, _ := unstructuredString(cm.Object, "data", "sharewarden.json")
		if !ok {
			continue
		}
		found = true
		if cm.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard: \"1\"", cm.GetLabels())
		}
		if strings.TrimSpace(data) != strings.TrimSpace(string(file)) {
			t.Error("the ConfigMap's dashboard differs from charts/sharewarden/files/grafana-dashboard.json")
		}
	}
	if !found {
		t.Fatal("no dashboard ConfigMap rendered")
	}
	for _, o := range render(t) {
		switch o.GetKind() {
		case "PodMonitor", "PrometheusRule":
			t.Errorf("%s %s rendered with monitoring off (the default)", o.GetKind(), o.GetName())
		}
		if _, ok := o.GetLabels()["grafana_dashboard"]; ok {
			t.Errorf("dashboard %s rendered with monitoring off", o.GetName())
		}
	}
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	cur := any(obj)
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}
