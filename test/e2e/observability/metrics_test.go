package observability_test

import (
	"context"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sharewarden/sharewarden/extender"
	"github.com/sharewarden/sharewarden/fencing"
	"github.com/sharewarden/sharewarden/nfsserver"
	"github.com/sharewarden/sharewarden/provisioner"
	"github.com/sharewarden/sharewarden/report"
	"github.com/sharewarden/sharewarden/webhook"
)

// registered returns every metric name ShareWarden's components register, by component, read
// from the descriptors of their real registries: the NFS server agent's (with its lease holder's),
// the controller's (provisioner, fencing and their collectors, on a registry of its own here), the
// webhook's and the extender's.
func registered(t *testing.T) map[string]string {
	t.Helper()
	regs := map[string]*prometheus.Registry{}

	opts := nfsserver.DefaultOptions()
	opts.VolumeID, opts.ClaimNamespace, opts.ClaimName = "uid-1", "team-a", "data"
	agent, err := nfsserver.New(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	fencing.NewHolderMetrics(agent.VolumeRegisterer())
	regs["nfs-server"] = agent.Registry()

	ctrl := report.NewRegistry()
	provisioner.NewMetrics(ctrl)
	fencing.NewMetrics(ctrl)
	report.Register(ctrl, provisioner.NewVolumeCollector(nil, nil))
	report.Register(ctrl, fencing.NewNodeCollector(nil, nil))
	regs["controller"] = ctrl

	scheme, err := provisioner.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	wh, err := webhook.NewServer(context.Background(), webhook.NewOptions().Config, crfake.NewClientBuilder().WithScheme(scheme).Build())
	if err != nil {
		t.Fatal(err)
	}
	regs["webhook"] = wh.Registry()
	ex, err := extender.NewServer(context.Background(), extender.DefaultConfig(), extender.NewStore(corev1.LabelTopologyZone, nil))
	if err != nil {
		t.Fatal(err)
	}
	regs["extender"] = ex.Registry()

	names := map[string]string{}
	for component, reg := range regs {
		for _, n := range describedNames(t, reg) {
			names[n] = component
		}
	}
	return names
}

var fqNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

// describedNames are the names of every metric c describes.
func describedNames(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	var out []string
	for d := range ch {
		m := fqNameRe.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("descriptor without a name: %s", d)
		}
		out = append(out, m[1])
	}
	return out
}

// known tells whether a name PromQL uses is a registered metric: itself, or a histogram's
// _bucket, _sum or _count series.
func known(names map[string]string, n string) bool {
	if _, ok := names[n]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(n, suffix); ok {
			if _, ok := names[base]; ok {
				return true
			}
		}
	}
	return false
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	promqlVars     = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_:]*\}?`)
	promqlBraces   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}
)

// metricNames are the metric names a PromQL expression (or a Grafana query, with its $variables)
// selects: identifiers outside label matchers, ranges, strings and grouping clauses that are not
// function calls or keywords.
func metricNames(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlVars.ReplaceAllString(e, "")
	e = promqlBraces.ReplaceAllString(e, "")
	e = promqlGrouping.ReplaceAllString(e, "")
	var out []string
	for _, loc := range promqlIdent.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || slices.Contains(promqlKeywords, id) {
			continue
		}
		if loc[0] > 0 && (e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9' || e[loc[0]-1] == '.') {
			continue // a number's exponent or a duration's unit
		}
		out = append(out, id)
	}
	return out
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`max by (claim_namespace, volume) (sharewarden_volume_phase{phase!~"Ready|Deleting"}) == 1`, []string{"sharewarden_volume_phase"}},
		{`100 * a_bytes / (a_bytes + b_bytes) >= 85`, []string{"a_bytes", "a_bytes", "b_bytes"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket{volume="$volume"}[$__rate_interval])))`, []string{"x_bucket"}},
		{`count(y == 1) or vector(0)`, []string{"y"}},
		{`a == 1 and on (pod) b == 0 unless c offset 5m`, []string{"a", "b", "c"}},
		{`increase(z_total[15m]) > 1e3`, []string{"z_total"}},
	} {
		got := metricNames(tc.expr)
		if !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, want %v", tc.expr, got, tc.want)
		}
	}
}

// TestRegisteredMetrics: every component registers its metrics through report, the
// per-volume ones carry the volume's labels, and names follow Prometheus conventions.
func TestRegisteredMetrics(t *testing.T) {
	names := registered(t)
	for _, want := range []string{"sharewarden_nfsserver_export_capacity_bytes", "sharewarden_nfsserver_ganesha_read_bytes_total",
		"sharewarden_nfsserver_clients", "sharewarden_nfsserver_ganesha_in_grace", "sharewarden_nfsserver_lease_renew_duration_seconds",
		"sharewarden_volume_phase", "sharewarden_node_fenced", "sharewarden_webhook_errors_total", "sharewarden_extender_bad_requests_total"} {
		if _, ok := names[want]; !ok {
			t.Errorf("%s is not registered", want)
		}
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	t.Logf("%d metrics registered", len(sorted))
}
