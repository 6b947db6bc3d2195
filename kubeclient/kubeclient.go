// Package kubeclient is how every ShareWarden role reaches the apiserver: one rule for finding
// the kubeconfig (--kubeconfig, else $KUBECONFIG, else ~/.kube/config, else the in-cluster
// service account) and the role's own client rate limits, as flags.
package kubeclient

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options say how a role reaches the apiserver. Roles embed them in their own Options.
type Options struct {
	// Kubeconfig is the kubeconfig file; empty means $KUBECONFIG, ~/.kube/config, or in-cluster.
	Kubeconfig string
	// KubeAPIQPS and KubeAPIBurst limit the role's requests to the apiserver; zero is
	// client-go's default (5 and 10).
	KubeAPIQPS   float32
	KubeAPIBurst int
}

// NewOptions returns options with the role's default rate limits.
func NewOptions(qps float32, burst int) Options {
	return Options{KubeAPIQPS: qps, KubeAPIBurst: burst}
}

// AddFlags binds --kubeconfig, --kube-api-qps and --kube-api-burst to the options.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "steady requests per second to the apiserver")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "request burst to the apiserver")
}

// Validate reports bad rate limits.
func (o *Options) Validate() error {
	if o.KubeAPIQPS < 0 || o.KubeAPIBurst < 0 {
		return fmt.Errorf("--kube-api-qps %v and --kube-api-burst %d must be positive (or 0 for client-go's default)", o.KubeAPIQPS, o.KubeAPIBurst)
	}
	return nil
}

// RESTConfig loads the client configuration and applies the rate limits; userAgent names the
// role in the apiserver's audit log and metrics.
func (o *Options) RESTConfig(userAgent string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", o.Kubeconfig, err)
	}
	cfg.UserAgent = userAgent
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	return cfg, nil
}
