package extender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/klog/v2"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sharewarden/sharewarden/report"
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
	// scratchPool holds *scratch.
	scratchPool sync.Pool
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
		registry: report.NewRegistry(),
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

// Registry is the server's metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// ServeHTTP serves every path of the extender.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// HealthHandler serves only /healthz, /readyz and /metrics.
func (s *Server) HealthHandler() http.Handler { return s.health }

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
	sc := s.scratch()
	defer s.release(sc)
	args, err := DecodeArgs(http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes), &sc.body)
	if err != nil {
		s.metrics.badRequests.WithLabelValues(verb).Inc()
		http.Error(w, "bad ExtenderArgs: "+err.Error(), http.StatusBadRequest)
		return
	}
	role := RoleOf(args.Pod)
	if verb == VerbFilter {
		s.filter(r.Context(), args, role, sc)
	} else {
		s.prioritize(r.Context(), args, role, sc)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Without it an answer over 2 KiB goes out chunked; with it kube-scheduler's decoder reads
	// the body's end with its last byte, and the connection is reused.
	h.Set("Content-Length", strconv.Itoa(len(sc.out)))
	if _, err := w.Write(sc.out); err != nil {
		s.log.Error(err, "writing extender answer failed", "verb", verb)
	}
	kind := role.String()
	s.metrics.requests.WithLabelValues(verb, kind).Inc()
	s.metrics.latency.WithLabelValues(verb, kind).Observe(time.Since(t0).Seconds())
}

// DecodeArgs reads one ExtenderArgs: a pod and either node names or nodes, and nothing after.
// buf (emptied first; nil for a new one) holds the body while it is decoded. Node names, up to
// one per node of the cluster, are sliced out of one string rather than allocated one by one.
func DecodeArgs(r io.Reader, buf *bytes.Buffer) (*extenderv1.ExtenderArgs, error) {
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, fmt.Errorf("body larger than %d bytes (--max-request-bytes)", mb.Limit)
		}
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	// The fields of extenderv1.ExtenderArgs, NodeNames left raw (a copy json makes).
	var in struct {
		Pod       *corev1.Pod
		Nodes     *corev1.NodeList
		NodeNames json.RawMessage
	}
	if err := json.Unmarshal(buf.Bytes(), &in); err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	args := &extenderv1.ExtenderArgs{Pod: in.Pod, Nodes: in.Nodes}
	if len(in.NodeNames) > 0 && string(in.NodeNames) != "null" {
		names, err := decodeNames(in.NodeNames)
		if err != nil {
			return nil, fmt.Errorf("decoding NodeNames: %w", err)
		}
		args.NodeNames = &names
	}
	if args.Pod == nil {
		return nil, errors.New("no pod")
	}
	if args.NodeNames == nil && args.Nodes == nil {
		return nil, errors.New("neither nodenames nor nodes")
	}
	return args, nil
}

// decodeNames decodes a JSON array of strings. Names without escapes (all real node names) are
// substrings of one copy of raw; anything else goes through encoding/json.
func decodeNames(raw json.RawMessage) ([]string, error) {
	// raw is json's own copy, never written again: the names may share its memory.
	all := unsafe.String(unsafe.SliceData(raw), len(raw))
	names := make([]string, 0, strings.Count(all, ",")+1)
	i := skipSpace(all, 0)
	if i >= len(all) || all[i] != '[' {
		return slowNames(raw)
	}
	i = skipSpace(all, i+1)
	if i < len(all) && all[i] == ']' {
		return names, nil
	}
	for {
		if i >= len(all) || all[i] != '"' {
			return slowNames(raw)
		}
		end := strings.IndexAny(all[i+1:], "\\\"")
		if end < 0 || all[i+1+end] != '"' {
			return slowNames(raw) // an escape: let encoding/json unquote
		}
		names = append(names, all[i+1:i+1+end])
		i = skipSpace(all, i+2+end)
		if i < len(all) && all[i] == ',' {
			i = skipSpace(all, i+1)
			continue
		}
		if i < len(all) && all[i] == ']' {
			return names, nil
		}
		return slowNames(raw)
	}
}

func slowNames(raw json.RawMessage) ([]string, error) {
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		return nil, err
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// scratch holds one request's working memory; the server pools it so that a request allocates
// next to nothing beyond decoding.
type scratch struct {
	names  []string
	nodes  []*NodeInfo
	counts []int32
	passed []string
	filter FilterResult
	scores extenderv1.HostPriorityList
	out    []byte
	body   bytes.Buffer
}

func (s *Server) scratch() *scratch {
	if sc, ok := s.scratchPool.Get().(*scratch); ok {
		return sc
	}
	return &scratch{}
}

func (s *Server) release(sc *scratch) {
	if sc.body.Cap() > 4*int(min(s.cfg.MaxRequestBytes, 16<<20)) {
		return // an outlier: let it go rather than hold it
	}
	clear(sc.nodes)
	sc.names = nil
	clear(sc.passed)
	sc.passed = sc.passed[:0]
	s.scratchPool.Put(sc)
}

// nodesOf reads the request's nodes into sc: names from NodeNames (looked up in the cache by
// Gather) or from full Node objects (summarised here, not looked up). It tells whether the
// nodes still need a lookup.
func (s *Server) nodesOf(args *extenderv1.ExtenderArgs, sc *scratch) (lookup bool) {
	n := nodeCount(args)
	if cap(sc.nodes) < n {
		sc.nodes = make([]*NodeInfo, n)
	}
	sc.nodes = sc.nodes[:n]
	if args.NodeNames != nil {
		sc.names = *args.NodeNames
		return true
	}
	items := args.Nodes.Items
	sc.names = make([]string, len(items))
	for i := range items {
		sc.names[i] = items[i].Name
		sc.nodes[i] = NewNodeInfo(&items[i], s.cfg.ZoneLabel)
	}
	return false
}

func (s *Server) gather(args *extenderv1.ExtenderArgs, role Role, sc *scratch, lookup bool, counts []int32) State {
	nodes := sc.nodes
	if !lookup {
		nodes = nil // full Node objects: already summarised
	}
	return s.facts.Gather(args.Pod, role, sc.names, nodes, counts)
}

// filter answers the filter verb into sc.out.
func (s *Server) filter(ctx context.Context, args *extenderv1.ExtenderArgs, role Role, sc *scratch) {
	s.metrics.nodes.WithLabelValues(VerbFilter).Observe(float64(nodeCount(args)))
	if role == RoleOther {
		sc.out = appendFilterResult(sc.out[:0], args.Nodes, args.NodeNames, nil, nil)
		return
	}
	lookup := s.nodesOf(args, sc)
	st := s.gather(args, role, sc, lookup, nil)
	res := filter(sc.names, sc.nodes, &st, sc.filter)
	sc.filter = res

	if args.NodeNames != nil {
		for _, p := range res.Passed {
			sc.passed = append(sc.passed, sc.names[p])
		}
		sc.out = appendFilterResult(sc.out[:0], nil, &sc.passed, res.Failed, res.Unresolvable)
	} else {
		list := &corev1.NodeList{Items: make([]corev1.Node, len(res.Passed))}
		for i, p := range res.Passed {
			list.Items[i] = args.Nodes.Items[p]
		}
		sc.out = appendFilterResult(sc.out[:0], list, nil, res.Failed, res.Unresolvable)
	}
	kind := role.String()
	for why, n := range res.Filtered {
		if n > 0 {
			s.metrics.filtered.WithLabelValues(kind, reasonLabels[why]).Add(float64(n))
		}
	}
	if log := s.log.V(1); log.Enabled() {
		log.WithValues("pod", klog.KObj(args.Pod)).Info("filtered nodes", "role", kind, "nodes", len(sc.names), "passed", len(res.Passed),
			"failed", len(res.Failed), "unresolvable", len(res.Unresolvable), "synced", st.Synced, "missing", st.Missing)
	}
}

// prioritize answers the prioritize verb into sc.out.
func (s *Server) prioritize(ctx context.Context, args *extenderv1.ExtenderArgs, role Role, sc *scratch) {
	s.metrics.nodes.WithLabelValues(VerbPrioritize).Observe(float64(nodeCount(args)))
	if role == RoleOther {
		sc.out = appendPriorities(sc.out[:0], nil) // no opinion: nothing to merge
		return
	}
	lookup := s.nodesOf(args, sc)
	var counts []int32
	if role == RoleServer {
		if cap(sc.counts) < len(sc.names) {
			sc.counts = make([]int32, len(sc.names))
		}
		counts = sc.counts[:len(sc.names)]
	}
	st := s.gather(args, role, sc, lookup, counts)
	log := s.log.V(1)
	var explain []Breakdown
	if log.Enabled() {
		log = log.WithValues("pod", klog.KObj(args.Pod))
		explain = make([]Breakdown, len(sc.names))
	}
	sc.scores = score(sc.names, sc.nodes, &st, sc.scores, explain)
	if explain != nil {
		s.explain(log, role, sc.scores, explain, &st)
	}
	sc.scores = relative(sc.scores)
	sc.out = appendPriorities(sc.out[:0], sc.scores)
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
