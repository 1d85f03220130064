package headers

import (
	"fmt"

	"github.com/rustygate/rustygate/l7/middleware"
	"github.com/rustygate/rustygate/l7/middleware/clientip"
)

// Operation kinds, in the order they run.
const (
	opRemove = iota
	opSet
	opAdd
)

type op struct {
	kind  int
	name  string
	value template
}

// Handler is a built headers middleware.
type Handler struct {
	trusted clientip.Proxies
	req     []op
	resp    []op
}

var _ middleware.Handler = (*Handler)(nil)

// New builds the middleware from validated settings.
func New(s *Settings) (*Handler, error) {
	h := &Handler{}
	var err error
	if h.trusted, err = clientip.ParseProxies(s.TrustedProxies); err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	if h.req, err = compile(&s.Request); err != nil {
		return nil, fmt.Errorf("headers: request: %w", err)
	}
	if h.resp, err = compile(&s.Response); err != nil {
		return nil, fmt.Errorf("headers: response: %w", err)
	}
	return h, nil
}

func compile(o *Ops) ([]op, error) {
	var ops []op
	for _, name := range o.Remove {
		if err := checkName(name); err != nil {
			return nil, err
		}
		ops = append(ops, op{kind: opRemove, name: name})
	}
	for _, kv := range []struct {
		kind int
		m    map[string]string
	}{{opSet, o.Set}, {opAdd, o.Add}} {
		for _, name := range sortedKeys(kv.m) {
			if err := checkName(name); err != nil {
				return nil, err
			}
			t, err := parseTemplate(kv.m[name])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			ops = append(ops, op{kind: kv.kind, name: name, value: t})
		}
	}
	return ops, nil
}

// Handle implements middleware.Handler. It never answers.
func (h *Handler) Handle(r middleware.Request) *middleware.Reply {
	for i := range h.req {
		o := &h.req[i]
		switch o.kind {
		case opRemove:
			r.DelHeader(o.name)
		case opSet:
			if v, ok := o.value.expand(r, h.trusted); ok {
				r.SetHeader(o.name, v)
			} else {
				r.DelHeader(o.name)
			}
		case opAdd:
			if v, ok := o.value.expand(r, h.trusted); ok {
				r.AddHeader(o.name, v)
			}
		}
	}
	for i := range h.resp {
		o := &h.resp[i]
		switch o.kind {
		case opRemove:
			r.DelResponseHeader(o.name)
		case opSet:
			r.DelResponseHeader(o.name)
			if v, ok := o.value.expand(r, h.trusted); ok {
				r.AddResponseHeader(o.name, v)
			}
		case opAdd:
			if v, ok := o.value.expand(r, h.trusted); ok {
				r.AddResponseHeader(o.name, v)
			}
		}
	}
	return nil
}
