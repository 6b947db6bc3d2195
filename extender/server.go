package extender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

// Verbs the extender answers, under Config.URLPrefix.
const (
	VerbFilter     = "filter"
	VerbPrioritize = "prioritize"
	PathMetrics    = "/metrics"
)

// Server is the extender's HTTP handler: the two verbs, /healthz, /readyz and /metrics. It owns
// its metrics registry.
type Server struct {
	cfg      Config
	facts    Facts
	log      logr.Logger
	registry *prometheus.Registry
	metrics  *metrics
	mux      *http.ServeMux
	health   *http.ServeMux
	nodeBufs sync.Pool
}

// NewServer builds the handler. facts answers the lookups (a *Store fed by informers);
// readyChecks gate /readyz besides the facts having synced. The logger comes from ctx.
func NewServer(ctx context.Context, cfg Config, facts Facts, readyChecks ...healthz.HealthChecker) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("extender configuration: %w", err)
	}
	if facts == nil {
		return nil, errors.New("extender configuration: no facts source")
	}
	s := &Server{
		cfg:      cfg,
		facts:    facts,
		log:      logf.FromContext(ctx),
		registry: prometheus.NewRegistry(),
		mux:      http.NewServeMux(),
		health:   http.NewServeMux(),
	}
	s.metrics = newMetrics(s.registry)
	s.mux.Handle(strings.TrimSuffix(cfg.URLPrefix, "/")+"/", http.HandlerFunc(s.serveVerb))
	synced := healthz.NamedCheck("informer-sync", func(*http.Request) error {
		if !facts.Synced() {
			return errors.New("informer caches not synced yet")
		}
		return nil
	})
	for _, mux := range []*http.ServeMux{s.mux, s.health} {
		mux.Handle(PathMetrics, promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
		healthz.InstallHandler(mux, healthz.PingHealthz)
		healthz.InstallReadyzHandler(mux, append([]healthz.HealthChecker{healthz.PingHealthz, synced}, readyChecks...)...)
	}
	return s, nil
}

// ServeHTTP serves every path of the extender.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// HealthHandler serves only /healthz, /readyz and /metrics.
func (s *Server) HealthHandler() http.Handler { return s.health }

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// serveVerb answers POST <prefix>/<verb>.
func (s *Server) serveVerb(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	verb := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(s.cfg.URLPrefix, "/")+"/")
	if verb != VerbFilter && verb != VerbPrioritize {
		s.metrics.badRequests.WithLabelValues("unknown").Inc()
		http.Error(w, fmt.Sprintf("unknown extender verb %q: this extender answers %q and %q", verb, VerbFilter, VerbPrioritize), http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodPost {
		s.metrics.badRequests.WithLabelValues(verb).Inc()
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "extender requests are POSTed", http.StatusMethodNotAllowed)
		return
	}
	args, err := DecodeArgs(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes))
	if err != nil {
		s.metrics.badRequests.WithLabelValues(verb).Inc()
		http.Error(w, "bad ExtenderArgs: "+err.Error(), http.StatusBadRequest)
		return
	}
	role := RoleOf(args.Pod)
	var out any
	if verb == VerbFilter {
		out = s.filter(r.Context(), args, role)
	} else {
		out = s.prioritize(r.Context(), args, role)
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		s.log.V(1).Info("writing extender answer failed", "verb", verb, "error", err)
	}
	kind := role.String()
	s.metrics.requests.WithLabelValues(verb, kind).Inc()
	s.metrics.latency.WithLabelValues(verb, kind).Observe(time.Since(t0).Seconds())
}

// DecodeArgs reads one ExtenderArgs: a pod and either node names or nodes, and nothing after.
func DecodeArgs(r io.Reader) (*extenderv1.ExtenderArgs, error) {
	dec := json.NewDecoder(r)
	var args extenderv1.ExtenderArgs
	if err := dec.Decode(&args); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("body larger than %d bytes (--max-request-bytes)", tooBig.Limit)
		}
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, fmt.Errorf("body larger than %d bytes (--max-request-bytes)", tooBig.Limit)
		}
		return nil, errors.New("trailing data after the ExtenderArgs object")
	}
	if args.Pod == nil {
		return nil, errors.New("no pod")
	}
	if args.NodeNames == nil && args.Nodes == nil {
		return nil, errors.New("neither nodenames nor nodes")
	}
	return &args, nil
}

// request is one request's nodes, in the form they came in.
type request struct {
	names []string
	nodes []*NodeInfo
	buf   *[]*NodeInfo
}

// nodesOf reads the request's nodes: names from NodeNames (looked up in the cache by Gather) or
// from full Node objects (summarised here, not looked up).
func (s *Server) nodesOf(args *extenderv1.ExtenderArgs) request {
	if args.NodeNames != nil {
		names := *args.NodeNames
		buf, _ := s.nodeBufs.Get().(*[]*NodeInfo)
		if buf == nil {
			buf = new([]*NodeInfo)
		}
		if cap(*buf) < len(names) {
			*buf = make([]*NodeInfo, len(names))
		}
		return request{names: names, nodes: (*buf)[:len(names)], buf: buf}
	}
	items := args.Nodes.Items
	req := request{names: make([]string, len(items)), nodes: make([]*NodeInfo, len(items))}
	for i := range items {
		req.names[i] = items[i].Name
		req.nodes[i] = NewNodeInfo(&items[i], s.cfg.ZoneLabel)
	}
	return req
}

func (s *Server) release(req request) {
	if req.buf != nil {
		clear(req.nodes)
		s.nodeBufs.Put(req.buf)
	}
}

func (s *Server) gather(args *extenderv1.ExtenderArgs, role Role, req request, counts []int32) State {
	lookup := req.nodes
	if args.NodeNames == nil {
		lookup = nil // full Node objects: already summarised
	}
	return s.facts.Gather(args.Pod, role, req.names, lookup, counts)
}

func (s *Server) filter(ctx context.Context, args *extenderv1.ExtenderArgs, role Role) *extenderv1.ExtenderFilterResult {
	s.metrics.nodes.WithLabelValues(VerbFilter).Observe(float64(nodeCount(args)))
	if role == RoleOther {
		return &extenderv1.ExtenderFilterResult{Nodes: args.Nodes, NodeNames: args.NodeNames}
	}
	req := s.nodesOf(args)
	defer s.release(req)
	st := s.gather(args, role, req, nil)
	res := filter(req.names, req.nodes, &st)

	out := &extenderv1.ExtenderFilterResult{FailedNodes: res.Failed, FailedAndUnresolvableNodes: res.Unresolvable}
	if args.NodeNames != nil {
		names := make([]string, len(res.Passed))
		for i, p := range res.Passed {
			names[i] = req.names[p]
		}
		out.NodeNames = &names
	} else {
		list := &corev1.NodeList{Items: make([]corev1.Node, len(res.Passed))}
		for i, p := range res.Passed {
			list.Items[i] = args.Nodes.Items[p]
		}
		out.Nodes = list
	}
	kind := role.String()
	for why, n := range res.Filtered {
		if n > 0 {
			s.metrics.filtered.WithLabelValues(kind, reasonLabels[why]).Add(float64(n))
		}
	}
	if log := logf.FromContext(ctx, "pod", klog.KObj(args.Pod)).V(1); log.Enabled() {
		log.Info("filtered nodes", "role", kind, "nodes", len(req.names), "passed", len(res.Passed),
			"failed", len(res.Failed), "unresolvable", len(res.Unresolvable), "synced", st.Synced, "missing", st.Missing)
	}
	return out
}

func (s *Server) prioritize(ctx context.Context, args *extenderv1.ExtenderArgs, role Role) *extenderv1.HostPriorityList {
	s.metrics.nodes.WithLabelValues(VerbPrioritize).Observe(float64(nodeCount(args)))
	if role == RoleOther {
		out := make(extenderv1.HostPriorityList, 0, nodeCount(args))
		if args.NodeNames != nil {
			for _, n := range *args.NodeNames {
				out = append(out, extenderv1.HostPriority{Host: n})
			}
		} else {
			for i := range args.Nodes.Items {
				out = append(out, extenderv1.HostPriority{Host: args.Nodes.Items[i].Name})
			}
		}
		return &out
	}
	req := s.nodesOf(args)
	defer s.release(req)
	var counts []int32
	if role == RoleServer {
		counts = make([]int32, len(req.names))
	}
	st := s.gather(args, role, req, counts)
	log := logf.FromContext(ctx, "pod", klog.KObj(args.Pod)).V(1)
	var explain []Breakdown
	if log.Enabled() {
		explain = make([]Breakdown, len(req.names))
	}
	out := score(req.names, req.nodes, &st, explain)
	if explain != nil {
		s.explain(log, role, out, explain, &st)
	}
	return &out
}

// explain logs, at V(1), the best nodes' scores with their parts; at V(2) every node's.
func (s *Server) explain(log logr.Logger, role Role, scores extenderv1.HostPriorityList, parts []Breakdown, st *State) {
	const top = 5
	shown := 0
	for best := extenderv1.MaxExtenderPriority; best >= 0 && shown < top; best-- {
		for i, hp := range scores {
			if hp.Score != best {
				continue
			}
			if shown >= top {
				break
			}
			shown++
			log.Info("node score", "role", role.String(), "node", hp.Host, "score", hp.Score,
				"data", parts[i].Data, "spread", parts[i].Spread, "consumerZone", parts[i].ConsumerZone,
				"serverAffinity", parts[i].ServerAffinity, "synced", st.Synced, "missing", st.Missing)
		}
	}
	if v2 := log.V(1); v2.Enabled() {
		for i, hp := range scores {
			v2.Info("node score detail", "node", hp.Host, "score", hp.Score, "data", parts[i].Data,
				"spread", parts[i].Spread, "consumerZone", parts[i].ConsumerZone, "serverAffinity", parts[i].ServerAffinity)
		}
	}
}

func nodeCount(args *extenderv1.ExtenderArgs) int {
	if args.NodeNames != nil {
		return len(*args.NodeNames)
	}
	return len(args.Nodes.Items)
}
