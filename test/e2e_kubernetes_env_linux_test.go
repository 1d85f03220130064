//go:build kubernetes

package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// kube is a real API server and etcd (built by tools/kube/assets.sh,
// found through KUBEBUILDER_ASSETS) with the Gateway API CRDs installed.
type kube struct {
	env        *envtest.Environment
	c          client.Client
	kubeconfig string
}

func kubeScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, gwv1.Install, apiextv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// startKube starts an API server and etcd, stopped at cleanup.
func startKube(t *testing.T) *kube {
	t.Helper()
	start := time.Now()
	k, err := newKube()
	if err != nil {
		t.Fatalf("API server: %v", err)
	}
	t.Cleanup(func() {
		if err := k.env.Stop(); err != nil {
			t.Errorf("stopping the API server: %v", err)
		}
	})
	t.Logf("API server and etcd up, Gateway API CRDs established in %v", time.Since(start).Round(time.Millisecond))
	return k
}

func newKube() (*kube, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run make test-kubernetes (tools/kube/assets.sh builds the API server)")
	}
	// envtest logs through controller-runtime's logger; its messages are
	// not needed (errors come back as errors).
	ctrllog.SetLogger(logr.Discard())
	env := &envtest.Environment{BinaryAssetsDirectory: assets, Scheme: kubeScheme()}
	// Without endpoint reconciliation the API server does not try to
	// publish its loopback address in the kubernetes Service, which the
	// EndpointSlice validation refuses.
	env.ControlPlane.GetAPIServer().Configure().Set("endpoint-reconciler-type", "none")
	rc, err := env.Start()
	if err != nil {
		return nil, err
	}
	k := &kube{env: env}
	if k.c, err = client.New(rc, client.Options{Scheme: env.Scheme}); err != nil {
		env.Stop()
		return nil, err
	}
	if err := k.installCRDs(); err != nil {
		env.Stop()
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "rustygate", Groups: []string{"system:masters"}}, nil)
	if err == nil {
		var kc []byte
		if kc, err = user.KubeConfig(); err == nil {
			k.kubeconfig = filepath.Join(env.ControlPlane.APIServer.CertDir, "rustygate.kubeconfig")
			err = os.WriteFile(k.kubeconfig, kc, 0o600)
		}
	}
	if err != nil {
		env.Stop()
		return nil, err
	}
	return k, nil
}

// installCRDs applies the Gateway API CRDs of the module (standard
// channel) server-side, as kubectl apply --server-side does: the
// HTTPRoute CRD is too large for a client-side apply's annotation.
func (k *kube) installCRDs() error {
	dir, err := gatewayAPIDir()
	if err != nil {
		return err
	}
	files, _ := filepath.Glob(filepath.Join(dir, "config", "crd", "standard", "*.yaml"))
	ctx := context.Background()
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err == io.EOF {
				break
			} else if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if u.GetKind() != "CustomResourceDefinition" {
				continue
			}
			if err := k.c.Patch(ctx, u, client.Apply, client.FieldOwner("rustygate-test"), client.ForceOwnership); err != nil {
				return fmt.Errorf("apply %s: %w", u.GetName(), err)
			}
			names = append(names, u.GetName())
		}
	}
	return k.waitEstablished(names)
}

func (k *kube) waitEstablished(names []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range names {
		for {
			crd := &apiextv1.CustomResourceDefinition{}
			if err := k.c.Get(context.Background(), client.ObjectKey{Name: n}, crd); err == nil && established(crd) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established within 30s", n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func established(crd *apiextv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
			return true
		}
	}
	return false
}

// gatewayAPIDir is the gateway-api module's directory in the module cache.
func gatewayAPIDir() (string, error) {
	out, err := exec.Command(goTool(), "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("go list sigs.k8s.io/gateway-api: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// namespace creates a namespace for one test, deleted at cleanup.
func (k *kube) namespace(t *testing.T, name string) string {
	t.Helper()
	k.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

func (k *kube) create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k.c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
	t.Cleanup(func() { k.c.Delete(context.Background(), obj) })
}

// update re-reads obj, applies change and writes it, retrying conflicts.
func (k *kube) update(t *testing.T, obj client.Object, change func()) {
	t.Helper()
	for i := 0; ; i++ {
		if err := k.c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		change()
		err := k.c.Update(context.Background(), obj)
		if err == nil {
			return
		}
		if i > 5 {
			t.Fatalf("update %s: %v", obj.GetName(), err)
		}
	}
}

// service is a Service with one port named http (80 -> 8080) and its
// EndpointSlice holding addrs (ready) and terminating (draining).
func (k *kube) service(t *testing.T, ns, name string, appProtocol string, addrs ...string) *discoveryv1.EndpointSlice {
	t.Helper()
	sp := corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}
	if appProtocol != "" {
		sp.AppProtocol = ptr.To(appProtocol)
	}
	k.create(t, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{sp}}})
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080)}},
		Endpoints:   readyEndpoints(addrs...),
	}
	k.create(t, es)
	return es
}

func readyEndpoints(addrs ...string) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, a := range addrs {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return out
}

// kubeNet is a network namespace holding the backends' addresses
// (203.0.113.0/24: EndpointSlices refuse loopback addresses), reached
// from the host through a veth pair. Deleted at cleanup, on failure too.
type kubeNet struct {
	ns string
}

const kubeNetHost = "203.0.113.1"

func newKubeNet(t *testing.T) *kubeNet {
	t.Helper()
	n := &kubeNet{ns: fmt.Sprintf("rgk8s%d", os.Getpid())}
	host, peer := n.ns+"h", n.ns+"p"
	exec.Command("ip", "netns", "del", n.ns).Run() // a leftover of a killed run
	exec.Command("ip", "link", "del", host).Run()
	ipCmd(t, "netns", "add", n.ns)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.ns).Run()
		exec.Command("ip", "link", "del", host).Run()
	})
	ipCmd(t, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", n.ns)
	ipCmd(t, "addr", "add", kubeNetHost+"/24", "dev", host)
	ipCmd(t, "link", "set", host, "up")
	ipCmd(t, "-n", n.ns, "link", "set", peer, "up")
	ipCmd(t, "-n", n.ns, "link", "set", "lo", "up")
	return n
}

// addr adds ip to the namespace's side of the pair.
func (n *kubeNet) addr(t *testing.T, ip string) {
	t.Helper()
	ipCmd(t, "-n", n.ns, "addr", "add", ip+"/24", "dev", n.ns+"p")
}

// demoBackend runs `rustygate demo-backend --name name` in the namespace
// on ip:8080 (a real process, stopped at cleanup) and waits until it
// answers.
func (n *kubeNet) demoBackend(t *testing.T, ip, name string) {
	t.Helper()
	n.addr(t, ip)
	cmd := exec.Command("ip", "netns", "exec", n.ns, gatewayBin, "demo-backend", "--listen", ip+":8080", "--name", name)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(stderr)
	if !sc.Scan() || !strings.Contains(sc.Text(), "listening") {
		t.Fatalf("demo backend %s did not start: %q", name, sc.Text())
	}
	go io.Copy(io.Discard, stderr)
}
