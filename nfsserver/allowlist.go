package nfsserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/log"

	swv1 "github.com/sharewarden/sharewarden/api/v1alpha1"
)

// The client allowlist, agent side. The controller computes the addresses a volume's export
// admits (its consumers' node addresses) and writes them on the server pod (annotation
// swv1.AnnotationAllowedClients); the agent watches its own pod, renders them into the config
// and has ganesha reload its exports with SIGHUP. ganesha 4.3 re-reads its whole config file
// on SIGHUP (reread_config: logging and exports) and updates an existing export's client list
// in place: clients of the export carry on, a client added is served at its next request, one
// removed is refused at its next (NFS4ERR_ACCESS on PUTFH). No dbus needed. A config ganesha
// cannot parse is logged and ignored by it, the old exports staying as they were.

// SetAllowedClients sets the clients the export admits (ClientAllowlist only). A change is
// written into the config and ganesha, if it runs and has started serving, reloads it at
// once; before that, ganesha starts with it.
func (a *Agent) SetAllowedClients(clients []netip.Addr) {
	a.allowMu.Lock()
	if a.clientsKnown && slices.Equal(a.clients, clients) {
		a.allowMu.Unlock()
		return
	}
	if !a.clientsKnown {
		close(a.clientsRead)
	}
	a.clients, a.clientsKnown = slices.Clone(clients), true
	a.clientsGen++
	a.allowMu.Unlock()
	select {
	case a.reload <- struct{}{}:
	default:
	}
}

// allowedClients returns the current list and its generation.
func (a *Agent) allowedClients() ([]netip.Addr, uint64) {
	a.allowMu.Lock()
	defer a.allowMu.Unlock()
	return slices.Clone(a.clients), a.clientsGen
}

// firstClientsWait bounds how long ganesha's start waits for the first client list.
const firstClientsWait = 5 * time.Second

// awaitFirstClients waits, before ganesha starts, until the first client list has been read (the
// server pod is created with it, so a replacement admits its consumers from its first request,
// while they may reclaim), at most firstClientsWait: then ganesha starts admitting nobody and the
// list is applied when it comes.
func (a *Agent) awaitFirstClients(ctx context.Context) {
	if !a.opts.ClientAllowlist {
		return
	}
	t := time.NewTimer(firstClientsWait)
	defer t.Stop()
	select {
	case <-a.clientsRead:
	case <-ctx.Done():
	case <-t.C:
		log.FromContext(ctx).Info("client allowlist not read yet; starting ganesha admitting nobody until it is", "waited", firstClientsWait.String())
	}
}

// writeConfig renders the config with the current clients into place (atomically, so ganesha
// never reads half a file) and returns the generation written.
func (a *Agent) writeConfig() (uint64, error) {
	clients, gen := a.allowedClients()
	path := a.opts.ConfigPath()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ganesha.conf-*")
	if err != nil {
		return 0, fmt.Errorf("writing ganesha config: %w", err)
	}
	_, werr := tmp.WriteString(RenderConfig(a.opts, clients))
	err = errors.Join(werr, tmp.Chmod(0o644), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return 0, fmt.Errorf("writing ganesha config: %w", err)
	}
	return gen, nil
}

// reloadLoop applies client list changes to the running ganesha until ctx ends. SIGHUP goes
// only to a ganesha that has answered an RPC since it started: before it has set up its signal
// handling, SIGHUP would kill it.
func (a *Agent) reloadLoop(ctx context.Context) {
	logger := log.FromContext(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.reload:
		case <-t.C:
		}
		proc := a.proc.Load()
		_, gen := a.allowedClients()
		if proc == nil || a.loadedGen.Load() == gen {
			continue
		}
		if !a.answered.Load() {
			if err := a.checkGanesha(ctx); err != nil {
				continue
			}
		}
		written, err := a.writeConfig()
		if err != nil {
			logger.Error(err, "client allowlist not applied; retrying")
			continue
		}
		if err := proc.Signal(syscall.SIGHUP); err != nil {
			continue // ganesha exited; the next one starts with the file just written
		}
		a.loadedGen.Store(written)
		clients, _ := a.allowedClients()
		logger.Info("client allowlist reloaded", "clients", len(clients), "addresses", fmt.Sprint(clients))
	}
}

// WatchAllowedClients watches the server pod name in pods (of UID uid, when set) and passes
// each new value of its allowed-clients annotation to set, until ctx ends. A pod without the
// annotation, or with an unparsable one, changes nothing (the last good list stays, none at
// first). One watch of one object: the apiserver sends an event only when the pod changes.
func WatchAllowedClients(ctx context.Context, pods corev1client.PodInterface, name string, uid types.UID, set func([]netip.Addr)) {
	logger := log.FromContext(ctx).WithValues("pod", name)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return pods.Watch(ctx, o)
		},
	}
	var last string
	seen := false
	update := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || (uid != "" && p.UID != uid) {
			return
		}
		v, ok := p.Annotations[swv1.AnnotationAllowedClients]
		if !ok || (seen && v == last) {
			return
		}
		clients, err := ParseAllowedClients(v)
		if err != nil {
			logger.Error(err, "ignoring the pod's client allowlist; keeping the last one", "annotation", swv1.AnnotationAllowedClients)
			return
		}
		last, seen = v, true
		set(clients)
	}
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    update,
			UpdateFunc: func(_, obj any) { update(obj) },
		},
	})
	informer.RunWithContext(ctx)
}
