package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Gate decides when ganesha may serve. The agent calls it once, before starting ganesha; it
// blocks until ganesha may start and returns a context that ends the moment ganesha must stop
// serving, for example when the volume's lease can no longer be renewed. The agent then kills
// ganesha at once (SIGKILL, no graceful shutdown) and exits with context.Cause of that context.
type Gate func(ctx context.Context) (serving context.Context, err error)

// Ungated lets ganesha start at once and serve until ctx ends.
func Ungated(ctx context.Context) (context.Context, error) { return ctx, nil }

// Agent supervises one ganesha process.
type Agent struct {
	opts    Options
	gate    Gate
	metrics *metrics
	// probe asks ganesha for an RPC NULL reply; tests swap it.
	probe func(ctx context.Context) error
	// running is true while the ganesha process is alive; pid is its pid then, else 0.
	running atomic.Bool
	// proc is the running ganesha; answered turns true once it answered an RPC since it started.
	proc     atomic.Pointer[os.Process]
	answered atomic.Bool

	// The client allowlist (ClientAllowlist): clients and their generation, bumped on every
	// change; loadedGen is the generation the running ganesha has read; reload wakes reloadLoop.
	allowMu      sync.Mutex
	clients      []netip.Addr
	clientsKnown bool
	clientsGen   uint64
	loadedGen    atomic.Uint64
	reload       chan struct{}
	// clientsRead is closed once the first list has been set.
	clientsRead chan struct{}
	// Stdout and Stderr receive ganesha's output (the agent's own by default).
	Stdout, Stderr io.Writer
}

// New validates opts and returns an agent; a nil gate is Ungated.
func New(opts Options, gate Gate) (*Agent, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if gate == nil {
		gate = Ungated
	}
	a := &Agent{opts: opts, gate: gate, Stdout: os.Stdout, Stderr: os.Stderr, reload: make(chan struct{}, 1), clientsRead: make(chan struct{})}
	a.metrics = newMetrics(opts, a.ganeshaPID)
	a.probe = func(ctx context.Context) error { return ProbeNFS(ctx, a.probeAddress(), opts.ProbeTimeout) }
	return a, nil
}

// ganeshaPID is the running ganesha's pid, or 0 while none runs (its /proc/<pid>/io feeds the
// I/O metrics).
func (a *Agent) ganeshaPID() int64 {
	if p := a.proc.Load(); p != nil {
		return int64(p.Pid)
	}
	return 0
}

// Registry is the agent's metrics registry, served on /metrics.
func (a *Agent) Registry() *prometheus.Registry { return a.metrics.registry }

// VolumeRegisterer registers on the agent's registry with the volume's labels (volume,
// claim_namespace, claim_name) added to every metric: for the volume's lease holder.
func (a *Agent) VolumeRegisterer() prometheus.Registerer { return a.metrics.volume }

// Run runs an ungated agent until ctx ends (nil after a clean stop) or ganesha dies (an error).
func Run(ctx context.Context, opts Options) error {
	a, err := New(opts, nil)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Run prepares the volume, serves HTTP, waits for the gate, then runs ganesha until ctx ends (a
// clean stop: nil), ganesha dies, or the gate's context ends (both errors).
func (a *Agent) Run(ctx context.Context) error {
	logger := log.FromContext(ctx).WithValues("volume", a.opts.VolumeID)
	ctx = log.IntoContext(ctx, logger)

	httpLn, err := a.preflight()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	logger.Info("serving health and metrics", "address", httpLn.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	// done ends the HTTP server and the prober once the supervisor returns.
	done, finish := context.WithCancel(gctx)
	g.Go(func() error {
		if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP on %s: %w", httpLn.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-done.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("stopping the HTTP server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		a.probeLoop(done)
		return nil
	})
	if a.opts.ClientAllowlist {
		g.Go(func() error {
			a.reloadLoop(done)
			return nil
		})
	}
	g.Go(func() error {
		defer finish()
		return a.supervise(gctx)
	})
	return g.Wait()
}

// preflight turns bad configuration into one clear error before anything starts: the ganesha
// binary must exist, the backing volume must be writable, the runtime dir must take the config,
// and both ports must be free. It returns the HTTP listener, which the agent keeps.
func (a *Agent) preflight() (net.Listener, error) {
	o := a.opts
	if _, err := exec.LookPath(o.GaneshaBinary); err != nil {
		return nil, fmt.Errorf("ganesha binary not found: %w", err)
	}
	if err := prepareVolume(o); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.CCacheDir(), 0o700); err != nil {
		return nil, fmt.Errorf("runtime dir %s is not usable: %w", o.RuntimeDir, err)
	}
	if _, err := a.writeConfig(); err != nil {
		return nil, err
	}
	// ganesha writes its pid over an existing file without truncating it, so a longer stale pid
	// (a restarted container keeps its emptyDir) would leave trailing digits behind.
	if err := os.Remove(o.PIDPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing stale ganesha pid file: %w", err)
	}
	// ganesha opens its port only after it has started, so a busy port would surface as a
	// crash; binding it here first says which port and why.
	nfsLn, err := net.Listen("tcp", o.NFSAddress)
	if err != nil {
		return nil, fmt.Errorf("NFS address %s is not available: %w", o.NFSAddress, err)
	}
	if err := nfsLn.Close(); err != nil {
		return nil, fmt.Errorf("releasing NFS address %s: %w", o.NFSAddress, err)
	}
	httpLn, err := net.Listen("tcp", o.HTTPAddress)
	if err != nil {
		return nil, fmt.Errorf("HTTP address %s is not available: %w", o.HTTPAddress, err)
	}
	return httpLn, nil
}

// prepareVolume checks the backing volume and creates the exported and state directories.
func prepareVolume(o Options) error {
	st, err := os.Stat(o.VolumeDir)
	switch {
	case err != nil:
		return fmt.Errorf("volume dir %s is not usable (is the backing volume mounted?): %w", o.VolumeDir, err)
	case !st.IsDir():
		return fmt.Errorf("volume dir %s is not a directory", o.VolumeDir)
	}
	// The exported root is world-writable when first made: pods run as any uid and NFS ignores
	// fsGroup, so a root-owned 0755 root would be read-only to most workloads. An existing
	// directory keeps whatever mode its users gave it.
	if err := mkdirMode(o.DataDir(), 0o777); err != nil {
		return fmt.Errorf("export dir is not usable: %w", err)
	}
	if err := mkdirMode(filepath.Join(o.VolumeDir, StateSubdir), 0o700); err != nil {
		return fmt.Errorf("state dir is not usable: %w", err)
	}
	for _, dir := range []string{o.DataDir(), filepath.Join(o.VolumeDir, StateSubdir)} {
		if err := checkWritable(dir); err != nil {
			return err
		}
	}
	return nil
}

// mkdirMode makes dir with exactly mode (no umask) unless it exists as a directory.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		if st, statErr := os.Stat(dir); statErr == nil && st.IsDir() {
			return nil
		}
		return err
	}
	return os.Chmod(dir, mode)
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".sharewarden-probe-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	name := f.Name()
	err = errors.Join(f.Close(), os.Remove(name))
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	return nil
}

// probeAddress is where the agent reaches ganesha: the bind address, or loopback for a wildcard.
func (a *Agent) probeAddress() string {
	ip, port, _ := splitIPPort(a.opts.NFSAddress)
	if ip.IsUnspecified() {
		if ip.To4() != nil {
			ip = net.IPv4(127, 0, 0, 1)
		} else {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(port))
}

// checkGanesha probes ganesha once, recording the result in the metrics.
func (a *Agent) checkGanesha(ctx context.Context) error {
	if !a.running.Load() {
		a.metrics.up.Set(0)
		return errors.New("ganesha is not running")
	}
	start := time.Now()
	err := a.probe(ctx)
	result := "ok"
	if err != nil {
		result = "error"
	}
	a.metrics.probes.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if err != nil {
		a.metrics.up.Set(0)
		return err
	}
	a.metrics.up.Set(1)
	a.answered.Store(true)
	return nil
}

// probeLoop keeps the ganesha_up metric current until ctx ends.
func (a *Agent) probeLoop(ctx context.Context) {
	logger := log.FromContext(ctx)
	t := time.NewTicker(a.opts.ProbeInterval)
	defer t.Stop()
	healthy := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.checkGanesha(ctx)
		if ctx.Err() != nil {
			return
		}
		if (err == nil) != healthy {
			healthy = err == nil
			if healthy {
				logger.Info("ganesha answers RPC")
			} else {
				logger.Info("ganesha does not answer RPC", "reason", err.Error())
			}
		}
	}
}

// Handler serves /healthz (200 only while ganesha answers an RPC NULL call) and /metrics.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.checkGanesha(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "ganesha unhealthy: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}
