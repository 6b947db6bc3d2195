package extender

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	apiserveroptions "k8s.io/apiserver/pkg/server/options"

	"github.com/sharewarden/sharewarden/kubeclient"
)

// Defaults.
const (
	// DefaultURLPrefix is where the verbs are served: <prefix>/filter, <prefix>/prioritize. The
	// shipped scheduler configurations use it.
	DefaultURLPrefix = "/scheduler"
	// DefaultPort is the extender's default HTTPS port.
	DefaultPort = 9445
	// DefaultMaxRequestBytes caps an ExtenderArgs body. With nodeCacheCapable the scheduler
	// sends node names (15,000 nodes are about 0.5 MiB); without it, full Node objects (a few
	// KiB each), which is why the default leaves room.
	DefaultMaxRequestBytes = 64 << 20
)

// Options configure the extender role. Build them with NewOptions, bind them with AddFlags.
type Options struct {
	// SecureServing is the HTTPS listener and its certificate files (reloaded when they
	// change). Set its BindPort to 0 to serve plain HTTP on HTTPAddress instead.
	SecureServing *apiserveroptions.SecureServingOptions
	// HTTPAddress, when set, serves plain HTTP there; it must be a loopback address (a
	// scheduler in the same pod, or tests).
	HTTPAddress string
	// HealthAddress, when set, also serves /healthz, /readyz and /metrics as plain HTTP there
	// (for kubelet probes and scrapers that should not need the extender's certificate).
	HealthAddress string
	// Options reach the apiserver; the limits apply to the informers' lists on start, then
	// their watches.
	kubeclient.Options
	// Config is what the handlers need.
	Config
	// ShutdownTimeout bounds the graceful stop of the server.
	ShutdownTimeout time.Duration
}

// Config is the decision side of the options.
type Config struct {
	// URLPrefix is where the verbs are served.
	URLPrefix string
	// ZoneLabel is the node label holding its zone.
	ZoneLabel string
	// MaxRequestBytes caps an ExtenderArgs body.
	MaxRequestBytes int64
	// Locators find where backing volumes' data lives (DefaultLocators unless set; not a flag).
	Locators []DataLocator
}

// NewOptions returns the defaults: HTTPS on DefaultPort with certificate files.
func NewOptions() *Options {
	ss := apiserveroptions.NewSecureServingOptions()
	ss.BindPort = DefaultPort
	// Certificates come from files (a Secret, cert-manager...): never generated here.
	ss.ServerCert = apiserveroptions.GeneratableKeyCert{}
	return &Options{
		SecureServing:   ss,
		Options:         kubeclient.NewOptions(20, 40),
		Config:          DefaultConfig(),
		ShutdownTimeout: 10 * time.Second,
	}
}

// DefaultConfig returns the default decision configuration.
func DefaultConfig() Config {
	return Config{
		URLPrefix:       DefaultURLPrefix,
		ZoneLabel:       corev1.LabelTopologyZone,
		MaxRequestBytes: DefaultMaxRequestBytes,
		Locators:        DefaultLocators(),
	}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.SecureServing.AddFlags(fs)
	_ = fs.MarkHidden("cert-dir")
	fs.StringVar(&o.HTTPAddress, "http-address", o.HTTPAddress, "serve plain HTTP on this loopback host:port instead of HTTPS (needs --secure-port=0; for a scheduler in the same pod)")
	fs.StringVar(&o.HealthAddress, "health-address", o.HealthAddress, "also serve /healthz, /readyz and /metrics as plain HTTP on this host:port (e.g. :8081)")
	o.Options.AddFlags(fs)
	fs.StringVar(&o.URLPrefix, "url-prefix", o.URLPrefix, "path under which the filter and prioritize verbs are served (the scheduler configuration's urlPrefix path)")
	fs.StringVar(&o.ZoneLabel, "zone-label", o.ZoneLabel, "node label holding the node's zone")
	fs.Int64Var(&o.MaxRequestBytes, "max-request-bytes", o.MaxRequestBytes, "largest ExtenderArgs body accepted")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	https := o.SecureServing != nil && (o.SecureServing.BindPort > 0 || o.SecureServing.Listener != nil)
	switch {
	case https && o.HTTPAddress != "":
		errs = append(errs, errors.New("--http-address and --secure-port are both set: set --secure-port=0 to serve plain HTTP"))
	case !https && o.HTTPAddress == "":
		errs = append(errs, errors.New("nothing to serve on: set --secure-port (HTTPS) or --http-address (plain HTTP on loopback)"))
	case https:
		errs = append(errs, o.SecureServing.Validate()...)
		if c := o.SecureServing.ServerCert.CertKey; c.CertFile == "" || c.KeyFile == "" {
			errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file are required for HTTPS (or serve plain HTTP on loopback with --secure-port=0 --http-address)"))
		}
	default:
		if err := checkLoopback(o.HTTPAddress); err != nil {
			errs = append(errs, err)
		}
	}
	if o.HealthAddress != "" {
		if _, _, err := net.SplitHostPort(o.HealthAddress); err != nil {
			errs = append(errs, fmt.Errorf("--health-address %q: %w", o.HealthAddress, err))
		}
	}
	errs = append(errs, o.Options.Validate())
	if o.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s is negative", o.ShutdownTimeout))
	}
	errs = append(errs, o.Config.Validate())
	return errors.Join(errs...)
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--http-address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--http-address %q: plain HTTP is served on loopback only (127.0.0.1, ::1, localhost); use HTTPS otherwise", addr)
	}
	return nil
}

// Validate reports every problem with the decision configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.URLPrefix, "/") || strings.ContainsAny(c.URLPrefix, "?# ") {
		errs = append(errs, fmt.Errorf("--url-prefix %q must be a path starting with /", c.URLPrefix))
	}
	if msgs := validation.IsQualifiedName(c.ZoneLabel); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--zone-label %q: %s", c.ZoneLabel, strings.Join(msgs, "; ")))
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-request-bytes %d must be positive", c.MaxRequestBytes))
	}
	if len(c.Locators) == 0 {
		errs = append(errs, errors.New("no data locators"))
	}
	for i, l := range c.Locators {
		if l == nil {
			errs = append(errs, fmt.Errorf("data locator %d is nil", i))
		}
	}
	return errors.Join(errs...)
}
