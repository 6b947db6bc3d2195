package report

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
)

func TestRegisterReusesTheCollectorAlreadyThere(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "sharewarden_test_total", Help: "test"}
	first := Register(reg, prometheus.NewCounter(opts))
	second := Register(reg, prometheus.NewCounter(opts))
	second.Inc()
	if first != second {
		t.Fatal("second registration did not return the first collector")
	}
}

func TestEventSkipsMissingRecorderAndObject(t *testing.T) {
	Event(nil, &corev1.Pod{}, corev1.EventTypeNormal, "R", "A", "no recorder")
	rec := events.NewFakeRecorder(2)
	var none *corev1.Pod
	Event(rec, none, corev1.EventTypeNormal, "R", "A", "typed nil")
	Event(rec, &corev1.Pod{}, corev1.EventTypeWarning, "Reason", "Act", "100% said")
	if len(rec.Events) != 1 {
		t.Fatalf("%d events, want 1", len(rec.Events))
	}
	if got := <-rec.Events; got != "Warning Reason 100% said" {
		t.Errorf("event %q", got)
	}
}
