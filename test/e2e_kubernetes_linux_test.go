//go:build kubernetes

package e2e_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/rustygate/rustygate/internal/testpki"
)

// kubeGateway runs the gateway with the Kubernetes provider on k, a file
// route /file to fileBackend, and an HTTPS listener whose certificate of
// the file is the fallback.
type kubeGateway struct {
	*gateway
	tlsAddr string
	client  *http.Client
}

func startKubeGateway(t *testing.T, k *kube, fileBackend string) *kubeGateway {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "file CA")
	cert, key := ca.Issue(t, testpki.Spec{Hosts: []string{"file.example.com"}}).WriteFiles(t, dir, "file")
	yaml := fmt.Sprintf(`server:
  listen: %s
  tls:
    listen: %s
    certificates:
      - { cert_file: %q, key_file: %q }
admin:
  listen: "off"
log:
  format: json
  access: false
providers:
  kubernetes:
    kubeconfig: %q
    debounce: 50ms
routes:
  - path: /file
    backend: %q
`, anyPort, anyPort, cert, key, k.kubeconfig, fileBackend)
	g := startGateway(t, "fast", yaml)
	kg := &kubeGateway{gateway: g, client: &http.Client{Timeout: 5 * time.Second}}
	t.Cleanup(kg.client.CloseIdleConnections)
	for _, l := range g.lines() {
		if l["msg"] == "RustyGate started" {
			kg.tlsAddr, _ = l["tls_listen"].(string)
		}
	}
	if kg.tlsAddr == "" {
		t.Fatalf("no tls_listen in the startup line")
	}
	return kg
}

// reloads counts the reloads logged so far.
func (g *kubeGateway) reloads() int {
	n := 0
	for _, l := range g.lines() {
		if l["msg"] == "Config reloaded" {
			n++
		}
	}
	return n
}

// quietReloads waits until no reload was logged for 300 ms (the bursts
// of earlier changes are over) and returns the count.
func (g *kubeGateway) quietReloads(t *testing.T) int {
	n, since := g.reloads(), time.Now()
	waitFor(t, 5*time.Second, "reloads to settle", func() bool {
		if m := g.reloads(); m != n {
			n, since = m, time.Now()
		}
		return time.Since(since) > 300*time.Millisecond
	})
	return n
}

// hit sends GET path with Host host (and headers hdr) and returns the
// status and the name of the demo backend that answered ("" if none).
func (g *kubeGateway) hit(host, path string, hdr ...string) (int, string, error) {
	req, _ := http.NewRequest("GET", g.URL()+path, nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	var v struct{ Backend string }
	json.Unmarshal(body, &v)
	return resp.StatusCode, v.Backend, err
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func gatewayClass(k *kube, t *testing.T) {
	k.create(t, &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "rustygate"},
		Spec: gwv1.GatewayClassSpec{ControllerName: "rustygate.io/gateway-controller"}})
}

func httpListener(name string, port int32, from gwv1.FromNamespaces) gwv1.Listener {
	return gwv1.Listener{Name: gwv1.SectionName(name), Port: gwv1.PortNumber(port), Protocol: gwv1.HTTPProtocolType,
		AllowedRoutes: &gwv1.AllowedRoutes{Namespaces: &gwv1.RouteNamespaces{From: &from}}}
}

func backendRef(name string, weight int32) gwv1.HTTPBackendRef {
	return gwv1.HTTPBackendRef{BackendRef: gwv1.BackendRef{
		BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: ptr.To[gwv1.PortNumber](80)},
		Weight:                 ptr.To(weight)}}
}

func parentRef(ns, name string) gwv1.ParentReference {
	n := gwv1.Namespace(ns)
	return gwv1.ParentReference{Name: gwv1.ObjectName(name), Namespace: &n}
}

func pathPrefix(p string) *gwv1.HTTPPathMatch {
	return &gwv1.HTTPPathMatch{Type: ptr.To(gwv1.PathMatchPathPrefix), Value: ptr.To(p)}
}

// routeCondition is the condition typ of the route's status for its
// first parent ("" when not written yet).
func routeCondition(k *kube, ns, name, typ string) (status, reason string) {
	r := &gwv1.HTTPRoute{}
	if err := k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, r); err != nil || len(r.Status.Parents) == 0 {
		return "", ""
	}
	c := meta.FindStatusCondition(r.Status.Parents[0].Conditions, typ)
	if c == nil {
		return "", ""
	}
	return string(c.Status), c.Reason
}

// TestKubernetes runs the gateway against a real API server: Gateway API
// routing with matches and weights, a Service scaled while under load,
// status, ReferenceGrant, a TLS listener from a Secret, GRPCRoute and
// Ingress.
func TestKubernetes(t *testing.T) {
	k := startKube(t)
	n := newKubeNet(t)
	for i, name := range []string{"a1", "a2", "b1", "canary", "s1", "s2", "s3", "x1"} {
		n.demoBackend(t, fmt.Sprintf("203.0.113.%d", 11+i), name)
	}
	file := newBackend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"backend":"file"}`) })
	ns := k.namespace(t, "apps")
	gatewayClass(k, t)
	k.create(t, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gw"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "rustygate", Listeners: []gwv1.Listener{httpListener("http", 80, gwv1.NamespacesFromAll)}}})
	// Services shared by the subtests.
	k.service(t, ns, "a", "", "203.0.113.11", "203.0.113.12")
	k.service(t, ns, "b", "", "203.0.113.13")
	k.service(t, ns, "canary", "", "203.0.113.14")
	start := time.Now()
	g := startKubeGateway(t, k, file.URL)
	t.Logf("gateway started with the provider synced in %v", time.Since(start).Round(time.Millisecond))

	t.Run("Routing", func(t *testing.T) { testKubeRouting(t, k, g, ns) })
	t.Run("Scale", func(t *testing.T) { testKubeScale(t, k, g, ns) })
	t.Run("Status", func(t *testing.T) { testKubeStatus(t, k, g, ns) })
	t.Run("ReferenceGrant", func(t *testing.T) { testKubeReferenceGrant(t, k, g, ns) })
	t.Run("TLS", func(t *testing.T) { testKubeTLS(t, k, g, ns) })
	t.Run("Ingress", func(t *testing.T) { testKubeIngress(t, k, g, ns) })
	t.Run("GRPCRoute", func(t *testing.T) { testKubeGRPCRoute(t, k, n, g, ns) })
	t.Run("L4", func(t *testing.T) { testKubeL4(t, k, n, g, ns) })
	t.Run("Routes1000", func(t *testing.T) { testKube1000Routes(t, k, g, ns) })
	t.Run("LeaderElection", func(t *testing.T) { testKubeLeader(t, k, g, ns, file.URL) }) // stops g: last
}

// testKubeRouting: header and path matches pick the Service, weights
// split the rest 3:1, and the file's route keeps working.
func testKubeRouting(t *testing.T, k *kube, g *kubeGateway, ns string) {
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"app.example.com"},
			Rules: []gwv1.HTTPRouteRule{
				{Matches: []gwv1.HTTPRouteMatch{{Path: pathPrefix("/shop"), Headers: []gwv1.HTTPHeaderMatch{{Name: "X-Canary", Value: "yes"}}}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("canary", 1)}},
				{Matches: []gwv1.HTTPRouteMatch{{Path: pathPrefix("/shop")}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("a", 3), backendRef("b", 1)}},
				{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: ptr.To(gwv1.PathMatchExact), Value: ptr.To("/exact")}}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("b", 1)}},
			}}})
	waitFor(t, 5*time.Second, "the HTTPRoute served", func() bool {
		code, _, _ := g.hit("app.example.com", "/shop/cart")
		return code == 200
	})
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		code, b, err := g.hit("app.example.com", "/shop/cart")
		if err != nil || code != 200 {
			t.Fatalf("request %d: %d %v", i, code, err)
		}
		counts[b]++
	}
	if a := counts["a1"] + counts["a2"]; a < 270 || a > 330 || counts["b1"] < 70 || counts["b1"] > 130 || counts["canary"] != 0 {
		t.Errorf("weights 3:1 over 400 requests: got %v", counts)
	}
	if counts["a1"] < 100 || counts["a2"] < 100 {
		t.Errorf("both endpoints of Service a should serve: %v", counts)
	}
	for _, c := range []struct {
		path, want string
		code       int
		hdr        []string
	}{
		{"/shop/x", "canary", 200, []string{"X-Canary", "yes"}},
		{"/shop/x", "", 200, []string{"X-Canary", "no"}}, // a or b
		{"/exact", "b1", 200, nil},
		{"/exact/more", "", 404, nil},
		{"/shopping", "", 404, nil},
	} {
		code, b, err := g.hit("app.example.com", c.path, c.hdr...)
		if err != nil || code != c.code || c.want != "" && b != c.want || c.hdr != nil && c.hdr[1] == "no" && b == "canary" {
			t.Errorf("GET %s %v: %d from %q (%v), want %d from %q", c.path, c.hdr, code, b, err, c.code, c.want)
		}
	}
	if code, _, _ := g.hit("other.example.com", "/shop/x"); code != 404 {
		t.Errorf("another host: %d, want 404", code)
	}
	if code, b, _ := g.hit("app.example.com", "/file"); code != 200 || b != "file" {
		t.Errorf("the file's route: %d from %q", code, b)
	}
}

// testKubeScale scales a Service from 2 to 3 endpoints and back under a
// steady load: the pool follows within a second and no request fails.
func testKubeScale(t *testing.T, k *kube, g *kubeGateway, ns string) {
	es := k.service(t, ns, "scale", "", "203.0.113.15", "203.0.113.16")
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scale"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"scale.example.com"},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("scale", 1)}}}}})
	waitFor(t, 5*time.Second, "the scale route served", func() bool {
		code, _, _ := g.hit("scale.example.com", "/")
		return code == 200
	})
	var (
		mu       sync.Mutex
		lastSeen = map[string]time.Time{}
		failed   atomic.Int64
		total    atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := 0; w < 4; w++ { // bounded load: 4 clients, one request at a time each
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, b, err := g.hit("scale.example.com", "/")
				total.Add(1)
				if err != nil || code != 200 {
					failed.Add(1)
					continue
				}
				mu.Lock()
				lastSeen[b] = time.Now()
				mu.Unlock()
			}
		}()
	}
	seen := func(b string, since time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		return lastSeen[b].After(since)
	}
	up := time.Now()
	k.update(t, es, func() { es.Endpoints = readyEndpoints("203.0.113.15", "203.0.113.16", "203.0.113.17") })
	took := waitFor(t, time.Second, "the third endpoint in the pool", func() bool { return seen("s3", up) })
	t.Logf("scale 2->3: the new endpoint served %v after the EndpointSlice update", took.Round(time.Millisecond))

	down := time.Now()
	k.update(t, es, func() {
		es.Endpoints[2].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	})
	var gone time.Time
	took = waitFor(t, time.Second, "the terminating endpoint out of the pool", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if gone.IsZero() || lastSeen["s3"].After(gone) {
			gone = time.Now()
			return false
		}
		return time.Since(gone) > 200*time.Millisecond && lastSeen["s3"].Before(gone)
	})
	t.Logf("scale 3->2: the terminating endpoint got no more requests %v after the update", (took - 200*time.Millisecond).Round(time.Millisecond))
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d requests failed while the Service scaled", f, total.Load())
	}
	if !seen("s1", down) || !seen("s2", down) {
		t.Errorf("the endpoints that stayed should keep serving")
	}
	t.Logf("%d requests, %d failed", total.Load(), failed.Load())
}

// testKubeStatus: an accepted route, a route to a missing Service, and a
// Gateway with conflicting listeners get the spec's conditions.
func testKubeStatus(t *testing.T, k *kube, g *kubeGateway, ns string) {
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fine"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"fine.example.com"},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("b", 1)}}}}})
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "missing"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"missing.example.com"},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("nope", 1)}}}}})
	waitFor(t, 5*time.Second, "status of the accepted route", func() bool {
		a, _ := routeCondition(k, ns, "fine", "Accepted")
		r, _ := routeCondition(k, ns, "fine", "ResolvedRefs")
		return a == "True" && r == "True"
	})
	waitFor(t, 5*time.Second, "ResolvedRefs False BackendNotFound on the route to a missing Service", func() bool {
		a, _ := routeCondition(k, ns, "missing", "Accepted")
		r, reason := routeCondition(k, ns, "missing", "ResolvedRefs")
		return a == "True" && r == "False" && reason == "BackendNotFound"
	})
	cls := &gwv1.GatewayClass{}
	waitFor(t, 5*time.Second, "GatewayClass Accepted", func() bool {
		k.c.Get(context.Background(), client.ObjectKey{Name: "rustygate"}, cls)
		return meta.IsStatusConditionTrue(cls.Status.Conditions, "Accepted")
	})
	host := gwv1.Hostname("dup.example.com")
	l1, l2 := httpListener("one", 8080, gwv1.NamespacesFromSame), httpListener("two", 8080, gwv1.NamespacesFromSame)
	l1.Hostname, l2.Hostname = &host, &host
	l2.Protocol = gwv1.HTTPSProtocolType // HTTP and HTTPS on one port: a ProtocolConflict
	l2.TLS = &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "none"}}}
	k.create(t, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "conflict"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "rustygate", Listeners: []gwv1.Listener{l1, l2}}})
	gw := &gwv1.Gateway{}
	waitFor(t, 5*time.Second, "listeners Conflicted ProtocolConflict and not Programmed", func() bool {
		k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "conflict"}, gw)
		if len(gw.Status.Listeners) != 2 {
			return false
		}
		c := meta.FindStatusCondition(gw.Status.Listeners[0].Conditions, "Conflicted")
		return c != nil && c.Status == "True" && c.Reason == "ProtocolConflict" &&
			meta.IsStatusConditionFalse(gw.Status.Listeners[0].Conditions, "Programmed")
	})
	main := &gwv1.Gateway{}
	k.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "gw"}, main)
	if !meta.IsStatusConditionTrue(main.Status.Conditions, "Programmed") || len(main.Status.Listeners) != 1 || main.Status.Listeners[0].AttachedRoutes < 2 {
		t.Errorf("gateway gw: conditions %v listeners %+v", main.Status.Conditions, main.Status.Listeners)
	}
}

// testKubeReferenceGrant: a route in another namespace reaches a Service
// of ns only once a ReferenceGrant in ns allows it.
func testKubeReferenceGrant(t *testing.T, k *kube, g *kubeGateway, ns string) {
	other := k.namespace(t, "team")
	k.service(t, ns, "shared", "", "203.0.113.18")
	ref := backendRef("shared", 1)
	ref.Namespace = ptr.To(gwv1.Namespace(ns))
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "cross"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"cross.example.com"},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{ref}}}}})
	waitFor(t, 5*time.Second, "ResolvedRefs False RefNotPermitted", func() bool {
		r, reason := routeCondition(k, other, "cross", "ResolvedRefs")
		return r == "False" && reason == "RefNotPermitted"
	})
	if code, _, _ := g.hit("cross.example.com", "/x"); code != 404 {
		t.Errorf("without a ReferenceGrant: %d, want 404", code)
	}
	k.create(t, &gwv1.ReferenceGrant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team-to-shared"},
		Spec: gwv1.ReferenceGrantSpec{
			From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: gwv1.Namespace(other)}},
			To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: ptr.To(gwv1.ObjectName("shared"))}}}})
	waitFor(t, 5*time.Second, "the cross-namespace route served", func() bool {
		code, b, _ := g.hit("cross.example.com", "/x")
		return code == 200 && b == "x1"
	})
	waitFor(t, 5*time.Second, "ResolvedRefs True", func() bool {
		r, _ := routeCondition(k, other, "cross", "ResolvedRefs")
		return r == "True"
	})
}

// testKubeTLS: an HTTPS listener serves the certificate of its Secret
// and follows the Secret's update.
func testKubeTLS(t *testing.T, k *kube, g *kubeGateway, ns string) {
	ca := testpki.NewCA(t, "kube CA")
	first := ca.Issue(t, testpki.Spec{Hosts: []string{"secure.example.com"}, CN: "first"})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secure-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: first.ChainPEM, corev1.TLSPrivateKeyKey: first.KeyPEM}}
	k.create(t, secret)
	host := gwv1.Hostname("secure.example.com")
	k.create(t, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secure"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "rustygate", Listeners: []gwv1.Listener{{
			Name: "https", Port: 443, Protocol: gwv1.HTTPSProtocolType, Hostname: &host,
			TLS: &gwv1.ListenerTLSConfig{CertificateRefs: []gwv1.SecretObjectReference{{Name: "secure-tls"}}}}}}})
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "secure"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "secure")}},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("b", 1)}}}}})
	var lastErr error
	defer func() {
		if t.Failed() {
			t.Logf("last HTTPS error: %v", lastErr)
		}
	}()
	served := func() (string, string) {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			ServerName: "secure.example.com", RootCAs: ca.Pool}}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+g.tlsAddr+"/x", nil)
		req.Host = "secure.example.com"
		resp, err := c.Do(req)
		lastErr = nil
		if err != nil {
			lastErr = err
			return "", ""
		}
		defer resp.Body.Close()
		var v struct{ Backend string }
		json.NewDecoder(resp.Body).Decode(&v)
		return resp.TLS.PeerCertificates[0].Subject.CommonName, v.Backend
	}
	waitFor(t, 5*time.Second, "the Secret's certificate served", func() bool {
		cn, b := served()
		return cn == "first" && b == "b1"
	})
	second := ca.Issue(t, testpki.Spec{Hosts: []string{"secure.example.com"}, CN: "second"})
	k.update(t, secret, func() {
		secret.Data = map[string][]byte{corev1.TLSCertKey: second.ChainPEM, corev1.TLSPrivateKeyKey: second.KeyPEM}
	})
	took := waitFor(t, 5*time.Second, "the updated certificate served", func() bool {
		cn, _ := served()
		return cn == "second"
	})
	t.Logf("certificate update served after %v", took.Round(time.Millisecond))
}

// testKubeIngress: an Ingress of the class, with Exact and Prefix paths
// as the Ingress spec defines them.
func testKubeIngress(t *testing.T, k *kube, g *kubeGateway, ns string) {
	exact, prefix := netv1PathType("Exact"), netv1PathType("Prefix")
	k.create(t, ingress(ns, "shop", "ing.example.com", []ingressPath{{"/exact", exact, "b"}, {"/foo", prefix, "canary"}}))
	waitFor(t, 5*time.Second, "the Ingress served", func() bool {
		code, _, _ := g.hit("ing.example.com", "/foo")
		return code == 200
	})
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/exact", 200, "b1"}, {"/exact/", 404, ""}, {"/exactly", 404, ""},
		{"/foo", 200, "canary"}, {"/foo/", 200, "canary"}, {"/foo/bar", 200, "canary"}, {"/foobar", 404, ""},
	} {
		code, b, err := g.hit("ing.example.com", c.path)
		if err != nil || code != c.code || b != c.want {
			t.Errorf("GET %s: %d from %q (%v), want %d from %q", c.path, code, b, err, c.code, c.want)
		}
	}
	reloads := g.quietReloads(t)
	other := ingress(ns, "other-class", "ing2.example.com", []ingressPath{{"/", prefix, "b"}})
	other.Spec.IngressClassName = ptr.To("nginx")
	k.create(t, other)
	time.Sleep(300 * time.Millisecond) // several debounce periods: it must stay unserved
	if n := g.reloads(); n != reloads {
		t.Errorf("an Ingress of another class caused %d reloads", n-reloads)
	}
	if code, _, _ := g.hit("ing2.example.com", "/x"); code != 404 {
		t.Errorf("an Ingress of another class is served: %d", code)
	}
}

// testKube1000Routes loads 1,000 HTTPRoutes, then measures how long a
// change to one of them takes to reach the data plane (logged: a
// measurement, not an assertion beyond a generous bound).
func testKube1000Routes(t *testing.T, k *kube, g *kubeGateway, ns string) {
	const n = 1000
	start := time.Now()
	routes := make([]*gwv1.HTTPRoute, n)
	for i := range routes {
		routes[i] = &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("many-%d", i)},
			Spec: gwv1.HTTPRouteSpec{
				CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
				Hostnames:       []gwv1.Hostname{gwv1.Hostname(fmt.Sprintf("m%d.example.com", i))},
				Rules: []gwv1.HTTPRouteRule{{Matches: []gwv1.HTTPRouteMatch{{Path: pathPrefix("/v1")}},
					BackendRefs: []gwv1.HTTPBackendRef{backendRef("b", 1)}}}}}
		k.create(t, routes[i])
	}
	waitFor(t, 60*time.Second, "the 1,000th route served", func() bool {
		code, _, _ := g.hit(fmt.Sprintf("m%d.example.com", n-1), "/v1")
		return code == 200
	})
	t.Logf("%d HTTPRoutes created and served in %v", n, time.Since(start).Round(time.Millisecond))
	r := routes[n/2]
	host := fmt.Sprintf("m%d.example.com", n/2)
	k.update(t, r, func() { r.Spec.Rules[0].Matches[0].Path = pathPrefix("/v2") })
	took := waitFor(t, 10*time.Second, "the changed route served", func() bool {
		code, _, _ := g.hit(host, "/v2")
		return code == 200
	})
	if code, _, _ := g.hit(host, "/v1"); code != 404 {
		t.Errorf("the old path still served: %d", code)
	}
	t.Logf("one route changed with %d HTTPRoutes loaded: served after %v", n, took.Round(time.Millisecond))
}

// leaseHolder is the holder of the status Lease ("" when none).
func leaseHolder(k *kube) string {
	l := &coordinationv1.Lease{}
	if err := k.c.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "rustygate-status"}, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// testKubeLeader: a second replica serves the same routes but writes no
// status while the first holds the Lease; when the first stops, the
// second takes the Lease over and writes status.
func testKubeLeader(t *testing.T, k *kube, g *kubeGateway, ns, fileBackend string) {
	host, _ := os.Hostname()
	first := fmt.Sprintf("%s_%d", host, g.cmd.Process.Pid)
	if h := leaseHolder(k); h != first {
		t.Fatalf("Lease held by %q, want the first gateway %q", h, first)
	}
	g2 := startKubeGateway(t, k, fileBackend)
	second := fmt.Sprintf("%s_%d", host, g2.cmd.Process.Pid)
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "both"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"both.example.com"},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("b", 1)}}}}})
	for _, gw := range []*kubeGateway{g, g2} {
		waitFor(t, 5*time.Second, "the route served by both replicas", func() bool {
			code, b, _ := gw.hit("both.example.com", "/x")
			return code == 200 && b == "b1"
		})
	}
	if h := leaseHolder(k); h != first {
		t.Errorf("the Lease moved to %q while the first gateway runs", h)
	}
	g.Stop()
	took := waitFor(t, 20*time.Second, "the second replica holding the Lease", func() bool { return leaseHolder(k) == second })
	t.Logf("the second replica took the Lease %v after the first stopped", took.Round(time.Millisecond))
	k.create(t, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "after"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{parentRef(ns, "gw")}},
			Hostnames:       []gwv1.Hostname{"after.example.com"},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{backendRef("b", 1)}}}}})
	waitFor(t, 5*time.Second, "status written by the new leader", func() bool {
		a, _ := routeCondition(k, ns, "after", "Accepted")
		return a == "True"
	})
}
