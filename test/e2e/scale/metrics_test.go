package scale_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/test/fixture"
)

func scrapeAPIServer(ctx context.Context, c *cluster.Cluster) (fixture.Metrics, error) {
	raw, err := c.Client().CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("scraping the apiserver: %w", err)
	}
	return fixture.ParseMetrics(raw)
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
func measure(ctx context.Context, b *testing.B, c *cluster.Cluster, ctl *fixture.ControllerProcess, d time.Duration) rates {
	snap := func() (fixture.Metrics, fixture.Metrics, time.Duration, time.Time) {
		api, err := scrapeAPIServer(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		m, err := ctl.Scrape(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return api, m, cluster.ProcessCPU(ctl.Pid()), time.Now()
	}
	api0, ctl0, cpu0, t0 := snap()
	time.Sleep(d)
	api1, ctl1, cpu1, t1 := snap()
	secs := t1.Sub(t0).Seconds()
	delta := func(a, b fixture.Metrics, name, by string) map[string]float64 {
		x, y := a.Sum(name, by), b.Sum(name, by)
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
