package webhook

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sharewarden/sharewarden/report"
)

// Paths the webhook serves.
const (
	PathClaims  = "/mutate/persistentvolumeclaims"
	PathPods    = "/mutate/pods"
	PathMetrics = "/metrics"
)

// Resources, as they label metrics.
const (
	ResourceClaims = "persistentvolumeclaims"
	ResourcePods   = "pods"
)

// Server is the webhook's HTTP handler: admission endpoints, health and metrics. It owns its
// metrics registry.
type Server struct {
	cfg      Config
	facts    facts
	log      logr.Logger
	registry *prometheus.Registry
	metrics  *metrics
	mux      *http.ServeMux
}

// NewServer builds the handler. reader answers the handlers' lookups (use ReadThrough over an
// informer cache); readyChecks gate /readyz (e.g. informer caches synced). The logger comes
// from ctx.
func NewServer(ctx context.Context, cfg Config, reader client.Reader, readyChecks ...healthz.HealthChecker) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook configuration: %w", err)
	}
	if reader == nil {
		return nil, fmt.Errorf("webhook configuration: no reader for storage classes and claims")
	}
	s := &Server{
		cfg:      cfg,
		facts:    facts{get: reader, list: reader, cfg: cfg},
		log:      logf.FromContext(ctx),
		registry: report.NewRegistry(),
		mux:      http.NewServeMux(),
	}
	s.metrics = newMetrics(s.registry)
	s.mux.Handle(PathClaims, s.endpoint(ResourceClaims, claimHandler{s}))
	s.mux.Handle(PathPods, s.endpoint(ResourcePods, podHandler{s}))
	s.mux.Handle(PathMetrics, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	healthz.InstallHandler(s.mux, healthz.PingHealthz)
	healthz.InstallReadyzHandler(s.mux, append([]healthz.HealthChecker{healthz.PingHealthz}, readyChecks...)...)
	return s, nil
}

// ServeHTTP serves every path of the webhook.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// endpoint wraps an admission handler: POST only, the body capped, requests counted and timed.
func (s *Server) endpoint(resource string, h admission.Handler) http.Handler {
	wh := &admission.Webhook{
		Handler: h,
		LogConstructor: func(_ logr.Logger, req *admission.Request) logr.Logger {
			l := s.log.WithValues("resource", resource)
			if req != nil {
				l = l.WithValues("object", klog.KRef(req.Namespace, req.Name), "operation", req.Operation,
					"user", req.UserInfo.Username, "requestID", req.UID)
			}
			return l
		},
	}
	requests := s.metrics.requests.WithLabelValues(resource)
	latency := s.metrics.latency.WithLabelValues(resource)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		requests.Inc()
		defer func() { latency.Observe(time.Since(t0).Seconds()) }()
		if r.Method != http.MethodPost {
			s.metrics.errors.WithLabelValues(resource, "405").Inc()
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
		wh.ServeHTTP(w, r)
	})
}
