package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	netv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	"github.com/rustygate/rustygate/config"
)

// Provider watches the API server and translates what it sees into
// routes. Translate may be called from any goroutine.
type Provider struct {
	cfg config.KubernetesProvider
	log *slog.Logger
	cs  kubernetes.Interface
	gcs gwclient.Interface
	// gatewayAPI is false when the API server serves no Gateway API
	// (its CRDs are not installed): Ingresses only.
	gatewayAPI bool
	// tlsRoutes and tcpRoutes are true when the API server serves them
	// (in gateway.networking.k8s.io/v1, from v1.5 of the CRDs).
	tlsRoutes, tcpRoutes bool

	informers []cache.SharedIndexInformer
	stores    stores
	changed   chan struct{}

	mu sync.Mutex
	// pending is the last translation, published is the last one the
	// gateway put in force: its status is what gets written.
	pending, published *Result
	publishedCh        chan struct{}
	reserved           map[int32]string
}

type stores struct {
	classes, gateways, httpRoutes, grpcRoutes, grants lister
	tlsRoutes, tcpRoutes                              lister
	ingresses, services, slices, secrets              lister
}

type lister interface{ List() []any }

// RESTConfig is the client configuration the settings name: the
// kubeconfig file, or the pod's service account.
func RESTConfig(cfg *config.KubernetesProvider) (*rest.Config, error) {
	if cfg.InCluster {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
}

// New builds a provider; Start starts its informers.
func New(rc *rest.Config, cfg *config.KubernetesProvider, log *slog.Logger) (*Provider, error) {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "rustygate"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	gcs, err := gwclient.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Provider{cfg: *cfg, log: log, cs: cs, gcs: gcs, changed: make(chan struct{}, 1), publishedCh: make(chan struct{}, 1)}, nil
}

// Start starts the informers, which run until ctx ends, and waits up to
// syncTimeout until their caches are filled.
func (p *Provider) Start(ctx context.Context, syncTimeout time.Duration) error {
	res, err := p.cs.Discovery().ServerResourcesForGroupVersion(gwv1.GroupVersion.String())
	p.gatewayAPI = err == nil
	if err == nil {
		for _, r := range res.APIResources {
			p.tlsRoutes = p.tlsRoutes || r.Name == "tlsroutes"
			p.tcpRoutes = p.tcpRoutes || r.Name == "tcproutes"
		}
	}
	if !p.gatewayAPI {
		p.log.Warn("kubernetes: the API server serves no Gateway API (CRDs not installed?); watching Ingresses only", "error", err.Error())
	}
	p.setupInformers()
	for _, inf := range p.informers {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { p.notify() },
			UpdateFunc: func(o, n any) {
				if !statusOnly(o, n) {
					p.notify()
				}
			},
			DeleteFunc: func(any) { p.notify() },
		}); err != nil {
			return err
		}
		go inf.RunWithContext(ctx)
	}
	syncs := make([]cache.InformerSynced, len(p.informers))
	for i, inf := range p.informers {
		syncs[i] = inf.HasSynced
	}
	sctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), syncs...) {
		return errors.New("kubernetes: caches not synced before the deadline")
	}
	return nil
}

// statusOnly reports an update that changed only the status of an object
// with a status subresource (its generation and annotations are the
// same), such as the provider's own status writes: nothing to reload.
func statusOnly(o, n any) bool {
	switch n.(type) {
	case *gwv1.Gateway, *gwv1.GatewayClass, *gwv1.HTTPRoute, *gwv1.GRPCRoute, *gwv1.TLSRoute, *gwv1.TCPRoute, *netv1.Ingress:
	default:
		return false
	}
	om, ok1 := o.(metav1.Object)
	nm, ok2 := n.(metav1.Object)
	return ok1 && ok2 && om.GetGeneration() == nm.GetGeneration() && maps.Equal(om.GetAnnotations(), nm.GetAnnotations()) &&
		om.GetDeletionTimestamp().Equal(nm.GetDeletionTimestamp())
}

func (p *Provider) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// setupInformers creates one informer per kind, over all namespaces or
// the one configured (several namespaces: one informer each).
func (p *Provider) setupInformers() {
	nss := p.cfg.Namespaces
	if len(nss) == 0 {
		nss = []string{metav1.NamespaceAll}
	}
	st := &p.stores
	multi := func(mk func(ns string) cache.SharedIndexInformer) lister {
		var ms multiStore
		for _, ns := range nss {
			inf := mk(ns)
			p.informers = append(p.informers, inf)
			ms = append(ms, inf.GetStore())
		}
		return ms
	}
	core := func(ns string, tweak func(*metav1.ListOptions)) informers.SharedInformerFactory {
		return informers.NewSharedInformerFactoryWithOptions(p.cs, 0, informers.WithNamespace(ns), informers.WithTweakListOptions(tweak))
	}
	st.services = multi(func(ns string) cache.SharedIndexInformer { return core(ns, nil).Core().V1().Services().Informer() })
	st.slices = multi(func(ns string) cache.SharedIndexInformer {
		return core(ns, nil).Discovery().V1().EndpointSlices().Informer()
	})
	st.secrets = multi(func(ns string) cache.SharedIndexInformer {
		tls := func(o *metav1.ListOptions) { o.FieldSelector = "type=" + string(corev1.SecretTypeTLS) }
		return core(ns, tls).Core().V1().Secrets().Informer()
	})
	st.ingresses = multi(func(ns string) cache.SharedIndexInformer {
		return core(ns, nil).Networking().V1().Ingresses().Informer()
	})
	if !p.gatewayAPI {
		return
	}
	gw := func(ns string) gwinformers.SharedInformerFactory {
		return gwinformers.NewSharedInformerFactoryWithOptions(p.gcs, 0, gwinformers.WithNamespace(ns))
	}
	cls := gw(metav1.NamespaceAll).Gateway().V1().GatewayClasses().Informer()
	p.informers = append(p.informers, cls)
	st.classes = cls.GetStore()
	st.gateways = multi(func(ns string) cache.SharedIndexInformer { return gw(ns).Gateway().V1().Gateways().Informer() })
	st.httpRoutes = multi(func(ns string) cache.SharedIndexInformer { return gw(ns).Gateway().V1().HTTPRoutes().Informer() })
	st.grpcRoutes = multi(func(ns string) cache.SharedIndexInformer { return gw(ns).Gateway().V1().GRPCRoutes().Informer() })
	st.grants = multi(func(ns string) cache.SharedIndexInformer { return gw(ns).Gateway().V1().ReferenceGrants().Informer() })
	if p.tlsRoutes {
		st.tlsRoutes = multi(func(ns string) cache.SharedIndexInformer { return gw(ns).Gateway().V1().TLSRoutes().Informer() })
	}
	if p.tcpRoutes {
		st.tcpRoutes = multi(func(ns string) cache.SharedIndexInformer { return gw(ns).Gateway().V1().TCPRoutes().Informer() })
	}
}

// multiStore lists several stores as one (read side only).
type multiStore []cache.Store

func (m multiStore) List() []any {
	var out []any
	for _, s := range m {
		out = append(out, s.List()...)
	}
	return out
}

func listOf[T any](s lister) []T {
	if s == nil {
		return nil
	}
	var out []T
	for _, o := range s.List() {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// World copies the caches. The objects are shared with the caches: read
// them, never write.
func (p *Provider) World() *World {
	st := &p.stores
	w := &World{
		Classes:    listOf[*gwv1.GatewayClass](st.classes),
		Gateways:   listOf[*gwv1.Gateway](st.gateways),
		HTTPRoutes: listOf[*gwv1.HTTPRoute](st.httpRoutes),
		GRPCRoutes: listOf[*gwv1.GRPCRoute](st.grpcRoutes),
		TLSRoutes:  listOf[*gwv1.TLSRoute](st.tlsRoutes),
		TCPRoutes:  listOf[*gwv1.TCPRoute](st.tcpRoutes),
		Grants:     listOf[*gwv1.ReferenceGrant](st.grants),
		Ingresses:  listOf[*netv1.Ingress](st.ingresses),
		Services:   map[string]*corev1.Service{},
		Secrets:    map[string]*corev1.Secret{},
		Slices:     map[string][]*discoveryv1.EndpointSlice{},
	}
	for _, s := range listOf[*corev1.Service](st.services) {
		w.Services[key(s.Namespace, s.Name)] = s
	}
	for _, s := range listOf[*corev1.Secret](st.secrets) {
		w.Secrets[key(s.Namespace, s.Name)] = s
	}
	for _, s := range listOf[*discoveryv1.EndpointSlice](st.slices) {
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
			k := key(s.Namespace, svc)
			w.Slices[k] = append(w.Slices[k], s)
		}
	}
	return w
}

// SetReserved sets the ports the gateway's own listeners hold (see
// Options.Reserved), for the translations that follow. m is not changed
// afterwards.
func (p *Provider) SetReserved(m map[int32]string) {
	p.mu.Lock()
	p.reserved = m
	p.mu.Unlock()
}

// Reserved returns the ports last given to SetReserved (not to be
// changed).
func (p *Provider) Reserved() map[int32]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reserved
}

// Translate translates the current objects. The result is pending until
// Published says the gateway put it in force.
func (p *Provider) Translate() *Result {
	p.mu.Lock()
	reserved := p.reserved
	p.mu.Unlock()
	res := Translate(p.World(), Options{GatewayClass: p.cfg.GatewayClass, IngressClass: p.cfg.IngressClass, Reserved: reserved})
	p.mu.Lock()
	p.pending = res
	p.mu.Unlock()
	return res
}

// Changed translates the current objects and reports whether their
// routes or certificates differ from those in force, so that a change to
// objects nothing refers to (another Service's endpoints, a Secret no
// listener uses) costs no reload. When only the status differs, it is
// published at once.
func (p *Provider) Changed() bool {
	res := p.Translate()
	p.mu.Lock()
	pub := p.published
	p.mu.Unlock()
	if pub == nil || !reflect.DeepEqual(res.Routes, pub.Routes) || !reflect.DeepEqual(res.L4, pub.L4) || !reflect.DeepEqual(res.Certificates, pub.Certificates) {
		return true
	}
	p.mu.Lock()
	p.published = res
	p.mu.Unlock()
	p.signalPublished()
	return false
}

// Published tells the provider that the last translation is in force:
// its status may be written.
func (p *Provider) Published() {
	p.mu.Lock()
	p.published = p.pending
	p.mu.Unlock()
	p.signalPublished()
}

func (p *Provider) signalPublished() {
	select {
	case p.publishedCh <- struct{}{}:
	default:
	}
}

// Run calls reload after each burst of changes (quiet for the debounce
// time, at most four times that after the first change), and writes
// status (when it holds the lease), until ctx ends.
func (p *Provider) Run(ctx context.Context, reload func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.runStatus(ctx)
	}()
	p.debounce(ctx, reload)
	wg.Wait()
}

func (p *Provider) debounce(ctx context.Context, reload func()) {
	d := p.cfg.Debounce.D()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.changed:
		}
		deadline := time.Now().Add(4 * d)
		quiet := time.NewTimer(d)
	burst:
		for {
			select {
			case <-ctx.Done():
				quiet.Stop()
				return
			case <-p.changed:
				quiet.Reset(min(d, time.Until(deadline)))
			case <-quiet.C:
				break burst
			}
		}
		reload()
	}
}

// String names the provider in logs.
func (p *Provider) String() string {
	return fmt.Sprintf("kubernetes(class %s, ingress class %s)", p.cfg.GatewayClass, p.cfg.IngressClass)
}
