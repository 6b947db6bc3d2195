package webhook

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	apiserveroptions "k8s.io/apiserver/pkg/server/options"

	v1alpha1 "github.com/sharewarden/sharewarden/api/v1alpha1"
	"github.com/sharewarden/sharewarden/kubeclient"
)

// DefaultMaxRequestBytes caps an AdmissionReview body: a claim update carries two claims and a
// pod create one pod, each far below the apiserver's 1.5 MiB object limit.
const DefaultMaxRequestBytes = 4 << 20

// DefaultPort is the webhook's default HTTPS port.
const DefaultPort = 9443

// Options configure the webhook role. Build them with NewOptions, bind them with AddFlags.
type Options struct {
	// SecureServing is the HTTPS listener and its certificate files, which are reloaded when
	// they change.
	SecureServing *apiserveroptions.SecureServingOptions
	// Options reach the apiserver. A burst of pods mounting fresh claims reads through to the
	// API, so the default limits are not tight.
	kubeclient.Options
	// Config is what the admission rules need.
	Config
	// ShutdownTimeout bounds the graceful stop of the HTTPS server.
	ShutdownTimeout time.Duration
}

// Config is the admission side of the options: what the handlers need to decide.
type Config struct {
	// ManagedClass is ShareWarden's storage class; shared claims on opted-in classes move to it.
	ManagedClass string
	// SchedulerName, when set, is a second scheduler that marked pods are handed to (unless they
	// name a scheduler of their own).
	SchedulerName string
	// ServerSchedulerName, when set, is the scheduler profile for NFS server pods (consumers
	// keep SchedulerName, or kube-scheduler's default profile when that is empty).
	ServerSchedulerName string
	// SystemNamespace is ShareWarden's namespace, where its NFS server pods run.
	SystemNamespace string
	// SystemUsers are the identities (usernames, e.g. service accounts) of ShareWarden's own
	// components: only they may set system annotations.
	SystemUsers []string
	// MaxRequestBytes caps an AdmissionReview body.
	MaxRequestBytes int64
}

// DefaultSystemUser is the controller's service account in the default namespace.
const DefaultSystemUser = "system:serviceaccount:" + v1alpha1.DefaultSystemNamespace + ":sharewarden-controller"

// NewOptions returns the defaults.
func NewOptions() *Options {
	ss := apiserveroptions.NewSecureServingOptions()
	ss.BindPort = DefaultPort
	ss.Required = true
	// Certificates come from files (a Secret, cert-manager...): never generated here.
	ss.ServerCert = apiserveroptions.GeneratableKeyCert{}
	return &Options{
		SecureServing: ss,
		Options:       kubeclient.NewOptions(50, 100),
		Config: Config{
			ManagedClass:    v1alpha1.DefaultManagedStorageClass,
			SystemNamespace: v1alpha1.DefaultSystemNamespace,
			SystemUsers:     []string{DefaultSystemUser},
			MaxRequestBytes: DefaultMaxRequestBytes,
		},
		ShutdownTimeout: 10 * time.Second,
	}
}

// AddFlags binds the options to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.SecureServing.AddFlags(fs)
	// The webhook never generates a certificate: --tls-cert-file and --tls-private-key-file it is.
	_ = fs.MarkHidden("cert-dir")
	o.Options.AddFlags(fs)
	fs.StringVar(&o.ManagedClass, "managed-storage-class", o.ManagedClass, "ShareWarden's storage class: shared claims on opted-in classes are rewritten to it")
	fs.StringVar(&o.SchedulerName, "scheduler-name", o.SchedulerName, "second scheduler to hand marked pods to, unless they chose one (default: none, kube-scheduler with the extender)")
	fs.StringVar(&o.ServerSchedulerName, "server-scheduler-name", o.ServerSchedulerName, "scheduler profile for NFS server pods, one scoring every node (default: --scheduler-name's, or kube-scheduler's default profile)")
	fs.StringVar(&o.SystemNamespace, "system-namespace", o.SystemNamespace, "ShareWarden's own namespace, where its NFS server pods run")
	fs.StringSliceVar(&o.SystemUsers, "system-users", o.SystemUsers, "usernames of ShareWarden's own components, the only ones allowed to set system annotations on claims")
	fs.Int64Var(&o.MaxRequestBytes, "max-request-bytes", o.MaxRequestBytes, "largest AdmissionReview body accepted")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", o.ShutdownTimeout, "how long in-flight requests may take to finish on shutdown")
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.SecureServing == nil {
		errs = append(errs, errors.New("secure serving options are missing"))
	} else {
		errs = append(errs, o.SecureServing.Validate()...)
		cert := o.SecureServing.ServerCert.CertKey
		if o.SecureServing.Listener == nil && o.SecureServing.BindPort <= 0 {
			errs = append(errs, errors.New("--secure-port must be set: the webhook serves HTTPS only"))
		}
		if cert.CertFile == "" || cert.KeyFile == "" {
			errs = append(errs, errors.New("--tls-cert-file and --tls-private-key-file are required: the apiserver only calls webhooks over HTTPS"))
		}
	}
	errs = append(errs, o.Options.Validate(), o.Config.Validate())
	if o.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s is negative", o.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the admission configuration at once.
func (c *Config) Validate() error {
	var errs []error
	if msgs := validation.IsDNS1123Subdomain(c.ManagedClass); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--managed-storage-class %q: %s", c.ManagedClass, strings.Join(msgs, "; ")))
	}
	if c.SchedulerName != "" {
		if msgs := validation.IsDNS1123Subdomain(c.SchedulerName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--scheduler-name %q: %s", c.SchedulerName, strings.Join(msgs, "; ")))
		}
	}
	if c.ServerSchedulerName != "" {
		if msgs := validation.IsDNS1123Subdomain(c.ServerSchedulerName); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--server-scheduler-name %q: %s", c.ServerSchedulerName, strings.Join(msgs, "; ")))
		}
	}
	if msgs := validation.IsDNS1123Label(c.SystemNamespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("--system-namespace %q: %s", c.SystemNamespace, strings.Join(msgs, "; ")))
	}
	for _, u := range c.SystemUsers {
		if strings.TrimSpace(u) == "" {
			errs = append(errs, errors.New("--system-users has an empty entry"))
		}
	}
	if c.MaxRequestBytes <= 0 {
		errs = append(errs, fmt.Errorf("--max-request-bytes %d must be positive", c.MaxRequestBytes))
	}
	return errors.Join(errs...)
}
