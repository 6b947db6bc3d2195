package scale_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sharewarden/sharewarden/test/cluster"
)

// metrics is one scrape of a Prometheus text endpoint.
type metrics map[string]*dto.MetricFamily

func parse(raw []byte) (metrics, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// sum adds up the counter, gauge or untyped samples of name by the values of the labels named
// in by (comma-separated, joined with "/" when several; "" sums everything under "").
func (m metrics) sum(name, by string) map[string]float64 {
	out := map[string]float64{}
	fam, ok := m[name]
	if !ok {
		return out
	}
	keys := strings.Split(by, ",")
	for _, s := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		var parts []string
		for _, k := range keys {
			if k != "" && labels[k] != "" {
				parts = append(parts, labels[k])
			}
		}
		key := strings.Join(parts, "/")
		switch {
		case s.Counter != nil:
			out[key] += s.GetCounter().GetValue()
		case s.Gauge != nil:
			out[key] += s.GetGauge().GetValue()
		case s.Untyped != nil:
			out[key] += s.GetUntyped().GetValue()
		}
	}
	return out
}

func (ctl *controller) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ctl.metrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parse(raw)
}

func scrapeAPIServer(ctx context.Context, c *cluster.Cluster) (metrics, error) {
	raw, err := c.Client().CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping the apiserver: %w", err)
	}
	return parse(raw)
}

// rates are per-second figures of one window.
type rates struct {
	seconds float64
	// api is the apiserver's requests by verb and resource[/subresource]; ctl the controller's
	// own, by HTTP method; reconciles its reconciles by controller.
	api, ctl, reconciles map[string]float64
	renewalsSeen         float64 // the Fencer's count of renewals it saw
	ctlCPU               float64 // controller CPU seconds per second
}

// measure counts what happens in a window of length d.
func measure(ctx context.Context, b *testing.B, c *cluster.Cluster, ctl *controller, d time.Duration) rates {
	snap := func() (metrics, metrics, time.Duration, time.Time) {
		api, err := scrapeAPIServer(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		m, err := ctl.scrape(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return api, m, cluster.ProcessCPU(ctl.cmd.Process.Pid), time.Now()
	}
	api0, ctl0, cpu0, t0 := snap()
	time.Sleep(d)
	api1, ctl1, cpu1, t1 := snap()
	secs := t1.Sub(t0).Seconds()
	delta := func(a, b metrics, name, by string) map[string]float64 {
		x, y := a.sum(name, by), b.sum(name, by)
		out := map[string]float64{}
		for k, v := range y {
			if r := (v - x[k]) / secs; r > 0 {
				out[k] = r
			}
		}
		return out
	}
	return rates{
		seconds:      secs,
		api:          delta(api0, api1, "apiserver_request_total", "verb,resource,subresource"),
		ctl:          delta(ctl0, ctl1, "rest_client_requests_total", "method"),
		reconciles:   delta(ctl0, ctl1, "controller_runtime_reconcile_total", "controller"),
		renewalsSeen: delta(ctl0, ctl1, "sharewarden_lease_renewals_seen_total", "")[""],
		ctlCPU:       (cpu1 - cpu0).Seconds() / secs,
	}
}

func total(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func (r rates) apiTotal() float64 { return total(r.api) }
func (r rates) ctlTotal() float64 { return total(r.ctl) }

func top(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func (r rates) log(b *testing.B, what string) {
	b.Logf("%s, %.0f s: apiserver %.1f req/s (%s); controller %.2f req/s (%s); reconciles/s %s; renewals seen by the Fencer %.1f/s; controller CPU %.3f cores",
		what, r.seconds, r.apiTotal(), top(r.api), r.ctlTotal(), top(r.ctl), top(r.reconciles), r.renewalsSeen, r.ctlCPU)
}

// report puts a window's headline figures on the benchmark line, prefixed.
func report(b *testing.B, prefix string, r rates) {
	b.ReportMetric(r.apiTotal(), prefix+"-api-req/s")
	b.ReportMetric(r.api["PUT/leases"], prefix+"-lease-updates/s")
	b.ReportMetric(r.ctlTotal(), prefix+"-ctl-req/s")
	b.ReportMetric(r.reconciles["fencer"], prefix+"-fencer-reconciles/s")
	b.ReportMetric(r.reconciles["provisioner"], prefix+"-provisioner-reconciles/s")
	b.ReportMetric(r.renewalsSeen, prefix+"-renewals-seen/s")
	b.ReportMetric(r.ctlCPU, prefix+"-ctl-cores")
}
