package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/wait"
	certutil "k8s.io/client-go/util/cert"

	"github.com/sharewarden/sharewarden/serving"
	"github.com/sharewarden/sharewarden/webhook"
)

// writeCert writes a fresh self-signed serving certificate for 127.0.0.1 to certFile and
// keyFile, replacing them atomically, and returns its serial number.
func writeCert(t *testing.T, certFile, keyFile string) *big.Int {
	t.Helper()
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	block, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}

func servedSerial(addr string) (*big.Int, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test reads the served certificate, it trusts nothing
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// The certificate files are watched: swap them and the new certificate is served, no restart.
func TestServeTLSReloadsRotatedCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile)

	opts := webhook.NewOptions()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.SecureServing.Listener = ln
	opts.SecureServing.ServerCert.CertKey.CertFile, opts.SecureServing.ServerCert.CertKey.KeyFile = certFile, keyFile
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newServer(t, nil)
	addr, stopped, err := serving.ServeTLS(ctx, opts.SecureServing, s, time.Second)
	if err != nil {
		t.Fatal(err)
	}

	got, err := servedSerial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Cmp(first) != 0 {
		t.Fatalf("serving serial %v, want %v", got, first)
	}
	// Health over real HTTPS.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
	resp, err := hc.Get("https://" + addr.String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz over HTTPS: %s", resp.Status)
	}

	second := writeCert(t, certFile, keyFile)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		got, err = servedSerial(addr.String())
		return err == nil && got.Cmp(second) == 0, nil
	})
	if err != nil {
		t.Fatalf("rotated certificate never served: still %v (want %v): %v", got, second, err)
	}

	cancel()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("server did not stop")
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("still accepting connections after stop")
	}
}

func TestServeTLSBadCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := webhook.NewOptions()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	opts.SecureServing.Listener = ln
	opts.SecureServing.ServerCert.CertKey.CertFile, opts.SecureServing.ServerCert.CertKey.KeyFile = certFile, keyFile
	if _, _, err := serving.ServeTLS(context.Background(), opts.SecureServing, http.NotFoundHandler(), time.Second); err == nil {
		t.Fatal("served with a garbage certificate")
	}
}

func TestOptions(t *testing.T) {
	o := webhook.NewOptions()
	fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{
		"--bind-address=127.0.0.1", "--secure-port=8443",
		"--tls-cert-file=/c/tls.crt", "--tls-private-key-file=/c/tls.key",
		"--managed-storage-class=shared-nfs", "--scheduler-name=sw-scheduler",
		"--server-scheduler-name=sw-server-scheduler", "--system-namespace=sw", "--system-users=a,b", "--max-request-bytes=1000", "--kubeconfig=/k",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.SecureServing.BindAddress.String() != "127.0.0.1" || o.SecureServing.BindPort != 8443 ||
		o.SecureServing.ServerCert.CertKey.CertFile != "/c/tls.crt" || o.SecureServing.ServerCert.CertKey.KeyFile != "/c/tls.key" ||
		o.ManagedClass != "shared-nfs" || o.SchedulerName != "sw-scheduler" || o.ServerSchedulerName != "sw-server-scheduler" || o.SystemNamespace != "sw" ||
		strings.Join(o.SystemUsers, ",") != "a,b" || o.MaxRequestBytes != 1000 || o.Kubeconfig != "/k" {
		t.Errorf("flags not bound: %+v %+v", o.Config, o.SecureServing)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("valid options refused: %v", err)
	}

	bad := webhook.NewOptions()
	bad.ManagedClass = "Not_A_Class"
	bad.SystemNamespace = ""
	bad.MaxRequestBytes = 0
	bad.SchedulerName = "UPPER"
	err = bad.Validate()
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"--tls-cert-file", "--managed-storage-class", "--system-namespace", "--max-request-bytes", "--scheduler-name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validation error lacks %s: %v", want, err)
		}
	}

	// A server profile in the cluster's own scheduler needs no second scheduler.
	alone := webhook.NewOptions()
	alone.ServerSchedulerName = "sw-server-scheduler"
	if err := alone.Config.Validate(); err != nil {
		t.Errorf("--server-scheduler-name without --scheduler-name: %v", err)
	}
	bad = webhook.NewOptions()
	bad.SchedulerName, bad.ServerSchedulerName = "sw", "Not_A_Name"
	if err := bad.Config.Validate(); err == nil || !strings.Contains(err.Error(), "--server-scheduler-name") {
		t.Errorf("invalid --server-scheduler-name accepted: %v", err)
	}
	if err := webhook.Run(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "invalid options") {
		t.Errorf("Run with invalid options: %v", err)
	}
}
