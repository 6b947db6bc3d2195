package serverrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ServiceAddress plays kube-proxy for one ClusterIP: it returns a local address that stands
// for clusterIP:2049 and, for each connection, follows what kube-proxy follows, the Service
// that holds clusterIP now and the ready endpoints of its EndpointSlices, to the agent
// serving that endpoint's pod. A connection is refused when no Service holds the address or
// none of its endpoints is ready, as a real node would. The same clusterIP always gets the
// same local address, so a client that keeps it sees what a pod mounting the Service IP sees.
func (r *Runner) ServiceAddress(clusterIP string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addr, ok := r.serviceAddrs[clusterIP]; ok {
		return addr, nil
	}
	if r.stopping {
		return "", fmt.Errorf("service %s: the runner is stopped", clusterIP)
	}
	r.nextIP++
	host := fmt.Sprintf("127.0.%d.%d", 1+r.nextIP/250, 1+r.nextIP%250)
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("listening for service %s: %w", clusterIP, err)
	}
	addr := l.Addr().String()
	r.serviceAddrs[clusterIP] = addr
	r.serviceListeners = append(r.serviceListeners, l)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			// Not waited for by Stop: a connection ends when either side closes, and Stop
			// ends every agent.
			go r.proxyService(clusterIP, conn)
		}
	}()
	return addr, nil
}

// proxyService forwards one client connection to the endpoint the Service at clusterIP has now.
func (r *Runner) proxyService(clusterIP string, client net.Conn) {
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	target, err := r.serviceTarget(ctx, clusterIP)
	cancel()
	if err != nil {
		r.mu.Lock()
		if !r.stopping { // a connection may outlive the test that made it
			r.cfg.Logf("service %s: refusing a connection: %v", clusterIP, err)
		}
		r.mu.Unlock()
		return
	}
	server, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

var errNoEndpoint = errors.New("no ready endpoint")

// serviceTarget resolves clusterIP as kube-proxy does, from the apiserver's Services and
// EndpointSlices, to the agent address of a ready endpoint's pod.
func (r *Runner) serviceTarget(ctx context.Context, clusterIP string) (string, error) {
	svcs, err := r.cfg.Client.CoreV1().Services(r.cfg.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing services: %w", err)
	}
	var svc *corev1.Service
	for i := range svcs.Items {
		if svcs.Items[i].Spec.ClusterIP == clusterIP {
			svc = &svcs.Items[i]
		}
	}
	if svc == nil {
		return "", fmt.Errorf("no service holds %s", clusterIP)
	}
	slices, err := r.cfg.Client.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name,
	})
	if err != nil {
		return "", fmt.Errorf("listing endpoint slices: %w", err)
	}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if e, ok := r.EndpointByUID(types.UID(ep.TargetRef.UID)); ok {
				return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)), nil
			}
		}
	}
	return "", fmt.Errorf("service %s/%s: %w", svc.Namespace, svc.Name, errNoEndpoint)
}
