package report

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestLeaderCollector(t *testing.T) {
	desc := prometheus.NewDesc("sharewarden_test_thing", "A thing.", []string{"name"}, nil)
	errorOpts := prometheus.CounterOpts{Name: "sharewarden_test_collect_errors_total", Help: "Failed scrapes."}
	closed := make(chan struct{})
	close(closed)
	list := func(names ...string) func(context.Context, func(prometheus.Metric)) error {
		return func(ctx context.Context, emit func(prometheus.Metric)) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("collect's context has no deadline")
			}
			for _, n := range names {
				emit(prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, 1, n))
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name    string
		elected <-chan struct{}
		collect func(context.Context, func(prometheus.Metric)) error
		want    string  // exposition of the second scrape
		errors  float64 // the error counter after it
	}{
		{
			name:    "not elected: only the error counter, and nothing read",
			elected: make(chan struct{}),
			collect: func(context.Context, func(prometheus.Metric)) error {
				t.Error("a replica that does not lead read its series")
				return nil
			},
			want: `
# HELP sharewarden_test_collect_errors_total Failed scrapes.
# TYPE sharewarden_test_collect_errors_total counter
sharewarden_test_collect_errors_total 0
`,
		},
		{
			name:    "read fails: counted, and no series, not even those emitted before the failure",
			elected: closed,
			collect: func(ctx context.Context, emit func(prometheus.Metric)) error {
				if err := list("early")(ctx, emit); err != nil {
					return err
				}
				return errors.New("cache not synced")
			},
			want: `
# HELP sharewarden_test_collect_errors_total Failed scrapes.
# TYPE sharewarden_test_collect_errors_total counter
sharewarden_test_collect_errors_total 2
`,
			errors: 2,
		},
		{
			name:    "elected and read: the series and the error counter",
			elected: closed,
			collect: list("a", "b"),
			want: `
# HELP sharewarden_test_collect_errors_total Failed scrapes.
# TYPE sharewarden_test_collect_errors_total counter
sharewarden_test_collect_errors_total 0
# HELP sharewarden_test_thing A thing.
# TYPE sharewarden_test_thing gauge
sharewarden_test_thing{name="a"} 1
sharewarden_test_thing{name="b"} 1
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewLeaderCollector(tc.elected, errorOpts, tc.collect, desc)
			// A pedantic registry checks every series against what Describe declared.
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(c)
			if _, err := reg.Gather(); err != nil { // the first scrape
				t.Fatal(err)
			}
			if err := testutil.GatherAndCompare(reg, strings.NewReader(tc.want)); err != nil {
				t.Error(err)
			}
			if got := c.Errors(); got != tc.errors {
				t.Errorf("Errors() %v after two scrapes, want %v", got, tc.errors)
			}
			var described []string
			ch := make(chan *prometheus.Desc, 2)
			c.Describe(ch)
			close(ch)
			for d := range ch {
				described = append(described, d.String())
			}
			if len(described) != 2 || !strings.Contains(described[0], `"sharewarden_test_thing"`) || !strings.Contains(described[1], `"sharewarden_test_collect_errors_total"`) {
				t.Errorf("described %v, want the thing, then the error counter", described)
			}
		})
	}
}
