// Package webhookrun runs ShareWarden's admission webhook in-process against a local control
// plane (test/cluster) and registers it with the apiserver, as the e2e tests and the demo need:
// a self-generated serving certificate for 127.0.0.1, a MutatingWebhookConfiguration carrying
// its CA bundle, and a wait until the apiserver really calls it.
package webhookrun

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/test/cluster"
	"github.com/sharewarden/sharewarden/webhook"
)

// DefaultConfigurationName is the MutatingWebhookConfiguration Start registers.
const DefaultConfigurationName = "sharewarden"

// Options configure Start. The zero value runs the webhook with its defaults and registers it.
type Options struct {
	// Config for the admission rules; zero fields take webhook.NewOptions' defaults.
	Config webhook.Config
	// ConfigurationName of the MutatingWebhookConfiguration (default DefaultConfigurationName).
	ConfigurationName string
	// NoRegister leaves the webhook running but unknown to the apiserver; call Register.
	NoRegister bool
	// Logger for the webhook (default: the one in Start's context).
	Logger *logr.Logger
	// Timeout bounds start-up and registration (default 60s).
	Timeout time.Duration
}

// Webhook is a running webhook.
type Webhook struct {
	// URL is the webhook's https base URL on 127.0.0.1.
	URL string
	// CABundle verifies its serving certificate.
	CABundle []byte

	name   string
	cfg    webhook.Config
	cs     kubernetes.Interface
	hc     *http.Client
	dir    string
	cancel context.CancelFunc
	done   chan error
}

// Start runs the webhook against c and, unless opts.NoRegister, registers it and waits until
// the apiserver calls it. Stop it when done.
func Start(ctx context.Context, c *cluster.Cluster, opts Options) (_ *Webhook, err error) {
	defaults := webhook.NewOptions()
	cfg := opts.Config
	if cfg.ManagedClass == "" {
		cfg.ManagedClass = defaults.ManagedClass
	}
	if cfg.SystemNamespace == "" {
		cfg.SystemNamespace = defaults.SystemNamespace
	}
	if cfg.SystemUsers == nil {
		cfg.SystemUsers = defaults.SystemUsers
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = defaults.MaxRequestBytes
	}
	if opts.ConfigurationName == "" {
		opts.ConfigurationName = DefaultConfigurationName
	}
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	log := logf.FromContext(ctx)
	if opts.Logger != nil {
		log = *opts.Logger
	}

	dir, err := os.MkdirTemp("", "sharewarden-webhook-")
	if err != nil {
		return nil, fmt.Errorf("creating cert dir: %w", err)
	}
	w := &Webhook{name: opts.ConfigurationName, cfg: cfg, cs: c.Client(), dir: dir, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			_ = w.Stop()
		}
	}()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if w.CABundle, err = WriteServingCert(certFile, keyFile); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(w.CABundle) {
		return nil, errors.New("generated CA bundle does not parse")
	}
	w.hc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the webhook: %w", err)
	}
	w.URL = "https://" + ln.Addr().String()
	wopts := webhook.NewOptions()
	wopts.Config = cfg
	wopts.Kubeconfig = c.Kubeconfig()
	wopts.SecureServing.Listener = ln
	wopts.SecureServing.ServerCert.CertKey.CertFile, wopts.SecureServing.ServerCert.CertKey.KeyFile = certFile, keyFile
	wopts.ShutdownTimeout = 2 * time.Second

	runCtx, cancel := context.WithCancel(logf.IntoContext(context.WithoutCancel(ctx), log))
	w.cancel = cancel
	go func() { w.done <- webhook.Run(runCtx, wopts) }()

	ctx, cancelWait := context.WithTimeout(ctx, opts.Timeout)
	defer cancelWait()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-w.done:
			w.done <- err
			return false, fmt.Errorf("webhook exited: %w", err)
		default:
		}
		resp, err := w.get(ctx, "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for the webhook's /readyz: %w", err)
	}
	if !opts.NoRegister {
		if err := w.Register(ctx); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// WriteServingCert writes a self-signed serving certificate and key for 127.0.0.1 and
// localhost, and returns the PEM bundle that verifies it.
func WriteServingCert(certFile, keyFile string) ([]byte, error) {
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"})
	if err != nil {
		return nil, fmt.Errorf("generating serving certificate: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", keyFile, err)
	}
	return certPEM, nil
}

func (w *Webhook) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.URL+path, nil)
	if err != nil {
		return nil, err
	}
	return w.hc.Do(req)
}

// Names of the webhooks in Configuration. The apiserver's errors name the webhook ("failed
// calling webhook \"rwx-claims.sharewarden.io\": ... connection refused"), so the one that can
// refuse a user's request says what it is for.
const (
	ClaimsWebhook  = "rwx-claims.sharewarden.io"
	PodsWebhook    = "pods.sharewarden.io"
	ServersWebhook = "servers.sharewarden.io"
)

// Configuration is the MutatingWebhookConfiguration for a webhook at baseURL, as the chart
// installs it with its default values:
//
//   - ClaimsWebhook: CREATE and UPDATE, and a CEL matchCondition so that claims without
//     ReadWriteMany or ReadOnlyMany never leave the apiserver; failurePolicy Fail, since a
//     shared claim admitted unrewritten can never bind;
//   - PodsWebhook: CREATE, only pods with a claim or ephemeral volume or a ShareWarden resource
//     (the webhook refuses forged markers); failurePolicy Ignore, since a consumer that misses
//     its marker only loses the extender's placement, and the apiserver cannot tell which
//     claims are ShareWarden's, so a closed failure would block every pod with a claim;
//   - ServersWebhook: NFS server pods in ShareWarden's own namespace; failurePolicy Ignore, so
//     that a failover never waits on the webhook;
//
// each with sideEffects None, a 5s timeout, and selectors that leave kube-system, ShareWarden's
// namespace (but for its server pods) and anything labelled sharewarden.io/ignore=true alone.
func Configuration(name, baseURL string, caBundle []byte, cfg webhook.Config) *admissionregistrationv1.MutatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	ignore := metav1.LabelSelectorRequirement{Key: v1alpha1.LabelIgnore, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"true"}}
	tenants := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{metav1.NamespaceSystem, cfg.SystemNamespace}},
		ignore,
	}}
	hook := func(name, path string, ops []admissionregistrationv1.OperationType, resource string) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(baseURL + path), CABundle: caBundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{resource}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             &none,
			TimeoutSeconds:          ptr.To[int32](5),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       tenants,
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{ignore}},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
		}
	}
	create := []admissionregistrationv1.OperationType{admissionregistrationv1.Create}
	claims := hook(ClaimsWebhook, webhook.PathClaims, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}, "persistentvolumeclaims")
	claims.MatchConditions = []admissionregistrationv1.MatchCondition{{
		Name:       "shared-access-mode",
		Expression: `has(object.spec.accessModes) && object.spec.accessModes.exists(m, m == 'ReadWriteMany' || m == 'ReadOnlyMany')`,
	}, {
		// An update matters only when it touches ShareWarden's annotations: binding, resizing and
		// finalizer removal never wait on the webhook.
		Name:       "creates-or-changes-sharewarden-annotations",
		Expression: `request.operation == 'CREATE' || (has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('sharewarden.io/') && !(has(oldObject.metadata.annotations) && k in oldObject.metadata.annotations && oldObject.metadata.annotations[k] == object.metadata.annotations[k]))) || (has(oldObject.metadata.annotations) && oldObject.metadata.annotations.exists(k, k.startsWith('sharewarden.io/') && !(has(object.metadata.annotations) && k in object.metadata.annotations)))`,
	}}
	pods := hook(PodsWebhook, webhook.PathPods, create, "pods")
	pods.FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
	// Other webhooks may add volumes after this one: look again if they did.
	pods.ReinvocationPolicy = ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy)
	const marks = `(has(c.resources) && ((has(c.resources.requests) && c.resources.requests.exists(k, k.startsWith('` + v1alpha1.GroupName + `/'))) || (has(c.resources.limits) && c.resources.limits.exists(k, k.startsWith('` + v1alpha1.GroupName + `/')))))`
	pods.MatchConditions = []admissionregistrationv1.MatchCondition{{
		Name: "may-concern-sharewarden",
		Expression: `(has(object.spec.volumes) && object.spec.volumes.exists(v, has(v.persistentVolumeClaim) || has(v.ephemeral))) || ` +
			`object.spec.containers.exists(c, ` + marks + `) || ` +
			`(has(object.spec.initContainers) && object.spec.initContainers.exists(c, ` + marks + `))`,
	}}
	servers := hook(ServersWebhook, webhook.PathPods, create, "pods")
	servers.FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
	servers.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: cfg.SystemNamespace}}
	servers.ObjectSelector = &metav1.LabelSelector{MatchLabels: map[string]string{v1alpha1.LabelComponent: v1alpha1.ComponentNFSServer}}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{claims, pods, servers},
	}
}

// Register creates (or replaces) the MutatingWebhookConfiguration and waits until the
// apiserver calls the webhook: a dry-run claim carrying a system annotation must be refused.
func (w *Webhook) Register(ctx context.Context) error {
	mwc := Configuration(w.name, w.URL, w.CABundle, w.cfg)
	api := w.cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if err := api.Delete(ctx, w.name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("replacing webhook configuration: %w", err)
	}
	if _, err := api.Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("registering webhook configuration: %w", err)
	}
	probe := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sharewarden-probe-", Annotations: map[string]string{v1alpha1.AnnotationBackingClaim: "probe"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = w.cs.CoreV1().PersistentVolumeClaims(metav1.NamespaceDefault).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return last != nil && strings.Contains(last.Error(), v1alpha1.AnnotationBackingClaim), nil
	})
	if err != nil {
		return fmt.Errorf("webhook registered but never called (last answer: %v): %w", last, err)
	}
	return nil
}

// Unregister deletes the MutatingWebhookConfiguration and waits until the apiserver stops
// calling the webhook.
func (w *Webhook) Unregister(ctx context.Context) error {
	err := w.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, w.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting webhook configuration: %w", err)
	}
	probe := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "sharewarden-probe-", Annotations: map[string]string{v1alpha1.AnnotationBackingClaim: "probe"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := w.cs.CoreV1().PersistentVolumeClaims(metav1.NamespaceDefault).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil, nil
	})
}

// Requests returns the webhook's request counter for resource ("persistentvolumeclaims" or
// "pods"), read from its /metrics.
func (w *Webhook) Requests(ctx context.Context, resource string) (float64, error) {
	return w.Metric(ctx, webhook.MetricRequests, `resource="`+resource+`"`)
}

// Metric sums the samples of the named metric whose labels contain every one of labels
// (each `key="value"`), read from the webhook's /metrics.
func (w *Webhook) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	resp, err := w.get(ctx, webhook.PathMetrics)
	if err != nil {
		return 0, fmt.Errorf("scraping metrics: %w", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// Shutdown stops the webhook's server and closes its port but leaves its configuration
// registered, as a crashed webhook would: the apiserver's calls are then refused and each
// webhook's failurePolicy decides. Stop still removes the configuration.
func (w *Webhook) Shutdown() error {
	if w.cancel == nil {
		return nil
	}
	w.cancel()
	w.cancel = nil
	select {
	case err := <-w.done:
		if err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("webhook did not stop within 30s")
	}
}

// Stop unregisters the webhook (so the apiserver does not fail requests to it), stops it and
// removes its certificates.
func (w *Webhook) Stop() error {
	var errs []error
	if w.cs != nil && w.URL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, w.name, metav1.DeleteOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting webhook configuration: %w", err))
		}
	}
	errs = append(errs, w.Shutdown())
	if w.dir != "" {
		errs = append(errs, os.RemoveAll(w.dir))
		w.dir = ""
	}
	return errors.Join(errs...)
}
