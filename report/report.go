// Package report is how ShareWarden's components report what they do: Prometheus collectors
// registered one way everywhere, and Kubernetes Events.
package report

import (
	"errors"
	"reflect"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// Register adds c to reg and returns it, or returns the collector of the same description
// already there: several controllers in one process (as in tests) share controller-runtime's
// registry and so count into the same metrics.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // two metrics of one name but different labels or help: a programming error
	}
	return c
}

// NewRegistry returns a registry of a server's own, with the Go runtime and process collectors
// that controller-runtime's registry has too.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	Register(reg, collectors.NewGoCollector())
	Register(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Event records an Event about regarding, if there is a recorder and an object (a nil pointer
// of any type counts as none).
func Event(rec events.EventRecorder, regarding runtime.Object, typ, reason, action, msg string) {
	if rec == nil || regarding == nil || reflect.ValueOf(regarding).IsNil() {
		return
	}
	rec.Eventf(regarding, nil, typ, reason, action, "%s", msg)
}
