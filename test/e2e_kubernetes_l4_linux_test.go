//go:build kubernetes

package e2e_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// serveNS serves the connections of ln (a listener in the namespace)
// with handle; the listener and the open connections are closed at
// cleanup and the handlers waited for.
func serveNS(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// tcpEcho sends msg through addr and returns what came back before the
// backend closed ("" with an error when the connection failed).
func tcpEcho(addr, msg string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// tlsTag opens a TLS session for name through addr and returns the
// backend's tag line and the open session.
func tlsTag(addr, name string, roots *x509.CertPool) (string, *tls.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return "", nil, err
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	tag, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil, err
	}
	c.SetDeadline(time.Time{})
	return strings.TrimSuffix(tag, "\n"), c, nil
}

// testKubeL4: a TCPRoute carries raw TCP to a backend, TLSRoutes route by
// SNI to two TLS backends whose own certificates the client sees (TLS is
// not terminated); removing the TCPRoute and then the TLS listener closes
// their ports while a session on the other listener goes on.
func testKubeL4(t *testing.T, k *kube, n *kubeNet, g *kubeGateway, ns string) {
	ca := newSNICA(t)
	dir := t.TempDir()
	for _, b := range []struct{ ip, tag, name string }{{"203.0.113.20", "tcp", ""}, {"203.0.113.21", "a", "a.example.com"}, {"203.0.113.22", "b", "b.example.com"}} {
		n.addr(t, b.ip)
		var cfg *tls.Config
		if b.name != "" {
			cert, _, _ := ca.issue(t, dir, b.name)
			cfg = &tls.Config{Certificates: []tls.Certificate{cert}}
		}
		serveNS(t, n.listen(t, b.ip+":8080"), func(c net.Conn) {
			if cfg != nil {
				c = tls.Server(c, cfg)
			}
			io.WriteString(c, b.tag+"\n")
			io.Copy(c, c)
		})
	}
	k.service(t, ns, "echo", "", "203.0.113.20")
	k.service(t, ns, "tls-a", "", "203.0.113.21")
	k.service(t, ns, "tls-b", "", "203.0.113.22")
	tcpAddr, tlsAddr := closedAddr(t), closedAddr(t)
	port := func(a string) gwv1.PortNumber {
		_, p, _ := net.SplitHostPort(a)
		var n int32
		fmt.Sscan(p, &n)
		return gwv1.PortNumber(n)
	}
	gw := &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "l4"}, Spec: gwv1.GatewaySpec{GatewayClassName: "rustygate", Listeners: []gwv1.Listener{
		{Name: "tcp", Port: port(tcpAddr), Protocol: gwv1.TCPProtocolType},
		{Name: "tls", Port: port(tlsAddr), Protocol: gwv1.TLSProtocolType, TLS: &gwv1.ListenerTLSConfig{Mode: ptr.To(gwv1.TLSModePassthrough)}},
	}}}
	k.create(t, gw)
	l4ref := func(section string) []gwv1.ParentReference {
		return []gwv1.ParentReference{{Name: "l4", SectionName: ptr.To(gwv1.SectionName(section))}}
	}
	be := func(name string) []gwv1.BackendRef {
		return []gwv1.BackendRef{{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr.To[gwv1.PortNumber](80)}}}
	}
	tcpRoute := &gwv1.TCPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "echo"},
		Spec: gwv1.TCPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: l4ref("tcp")}, Rules: []gwv1.TCPRouteRule{{BackendRefs: be("echo")}}}}
	k.create(t, tcpRoute)
	for _, x := range []string{"a", "b"} {
		k.create(t, &gwv1.TLSRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tls-" + x},
			Spec: gwv1.TLSRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: l4ref("tls")},
				Hostnames: []gwv1.Hostname{gwv1.Hostname(x + ".example.com")}, Rules: []gwv1.TLSRouteRule{{BackendRefs: be("tls-" + x)}}}})
	}
	took := waitFor(t, 5*time.Second, "raw TCP through the TCPRoute", func() bool {
		got, err := tcpEcho(tcpAddr, "hello over tcp")
		return err == nil && got == "tcp\nhello over tcp"
	})
	t.Logf("TCPRoute served %v after its objects were created", took.Round(time.Millisecond))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	waitFor(t, 5*time.Second, "the TLSRoutes served", func() bool {
		_, c, err := tlsTag(tlsAddr, "b.example.com", roots)
		if c != nil {
			c.Close()
		}
		return err == nil
	})
	for _, x := range []string{"a", "b"} {
		tag, cert, _ := sniExchange(t, tlsAddr, x+".example.com", roots)
		if tag != x || cert.Subject.CommonName != x+".example.com" {
			t.Errorf("SNI %s.example.com: backend %q, certificate %q", x, tag, cert.Subject.CommonName)
		}
	}
	if _, _, err := tlsTag(tlsAddr, "c.example.com", roots); err == nil {
		t.Errorf("a name no TLSRoute lists was routed")
	}
	checkL4Status(t, k, ns)

	// A session on the TLS listener outlives the removal of the TCP route
	// and its listener.
	tag, kept, err := tlsTag(tlsAddr, "a.example.com", roots)
	if err != nil || tag != "a" {
		t.Fatalf("session to a: %q %v", tag, err)
	}
	defer kept.Close()
	if err := k.c.Delete(context.Background(), tcpRoute); err != nil {
		t.Fatal(err)
	}
	took = waitFor(t, 5*time.Second, "the TCP port closed once its TCPRoute is deleted", func() bool {
		_, err := tcpEcho(tcpAddr, "x")
		return err != nil && strings.Contains(err.Error(), "refused")
	})
	t.Logf("TCP listener unbound %v after the TCPRoute was deleted", took.Round(time.Millisecond))
	kept.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(kept, "still here\n"); err != nil {
		t.Fatalf("the kept session after the reload: %v", err)
	}
	line, err := bufio.NewReader(kept).ReadString('\n')
	if err != nil || line != "still here\n" {
		t.Fatalf("the kept session after the reload echoed %q, %v", line, err)
	}
	if tag, _, _ := sniExchange(t, tlsAddr, "b.example.com", roots); tag != "b" {
		t.Errorf("b after the TCPRoute was deleted: %q", tag)
	}
	k.update(t, gw, func() { gw.Spec.Listeners = gw.Spec.Listeners[:1] })
	waitFor(t, 5*time.Second, "the TLS port closed once its listener is removed", func() bool {
		c, err := net.DialTimeout("tcp", tlsAddr, time.Second)
		if c != nil {
			c.Close()
		}
		return err != nil && strings.Contains(err.Error(), "refused")
	})
	if code, b, _ := g.hit("app.example.com", "/file"); code != 200 || b != "file" {
		t.Errorf("the file's route after the l4 listeners went: %d from %q", code, b)
	}

	// A TCP listener on the port of the file's HTTPS listener is left out,
	// and its status says which listener holds the port.
	k.update(t, gw, func() {
		gw.Spec.Listeners = append(gw.Spec.Listeners[:1], gwv1.Listener{Name: "clash", Port: port(g.tlsAddr), Protocol: gwv1.TCPProtocolType})
	})
	waitFor(t, 10*time.Second, "the listener on the file's port reported PortUnavailable", func() bool {
		got := &gwv1.Gateway{}
		if k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "l4"}, got) != nil || len(got.Status.Listeners) != 2 {
			return false
		}
		c := meta.FindStatusCondition(got.Status.Listeners[1].Conditions, "Accepted")
		return c != nil && c.Status == "False" && c.Reason == string(gwv1.ListenerReasonPortUnavailable) &&
			strings.Contains(c.Message, "server.tls.listen") && !meta.IsStatusConditionTrue(got.Status.Conditions, "Programmed")
	})
	if code, b, _ := g.hit("app.example.com", "/file"); code != 200 || b != "file" {
		t.Errorf("the file's route with a Gateway listener on its HTTPS port: %d from %q", code, b)
	}
}

// checkL4Status waits for the TCPRoute and TLSRoutes to be Accepted with
// their references resolved, and the Gateway's listeners Programmed with
// the routes attached.
func checkL4Status(t *testing.T, k *kube, ns string) {
	waitFor(t, 10*time.Second, "TCPRoute and TLSRoutes Accepted and ResolvedRefs", func() bool {
		var parents [][]gwv1.RouteParentStatus
		tr := &gwv1.TCPRoute{}
		if k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "echo"}, tr) != nil {
			return false
		}
		parents = append(parents, tr.Status.Parents)
		for _, x := range []string{"a", "b"} {
			r := &gwv1.TLSRoute{}
			if k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "tls-" + x}, r) != nil {
				return false
			}
			parents = append(parents, r.Status.Parents)
		}
		for _, ps := range parents {
			if len(ps) != 1 || !meta.IsStatusConditionTrue(ps[0].Conditions, "Accepted") || !meta.IsStatusConditionTrue(ps[0].Conditions, "ResolvedRefs") {
				return false
			}
		}
		gw := &gwv1.Gateway{}
		if k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "l4"}, gw) != nil || len(gw.Status.Listeners) != 2 {
			return false
		}
		for i, attached := range []int32{1, 2} { // tcp: the TCPRoute; tls: both TLSRoutes
			l := gw.Status.Listeners[i]
			if l.AttachedRoutes != attached || !meta.IsStatusConditionTrue(l.Conditions, "Programmed") {
				return false
			}
		}
		return true
	})
}
