package middleware_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/rustygate/rustygate/l7/middleware"
	_ "github.com/rustygate/rustygate/l7/middleware/standard"
)

func TestStandardModules(t *testing.T) {
	names := middleware.Names()
	for _, want := range []string{"cors", "jwt", "rate_limit", "waf", "wasm"} {
		if !slices.Contains(names, want) {
			t.Errorf("module %q not registered (have %v)", want, names)
		}
		if m, ok := middleware.Lookup(want); !ok || m.Name != want || m.New == nil {
			t.Errorf("Lookup(%q) = %+v, %v", want, m, ok)
		}
	}
	if _, ok := middleware.Lookup("nope"); ok {
		t.Error("Lookup of an unregistered name succeeded")
	}
}

func TestRegisterRefusesMistakes(t *testing.T) {
	build := func(middleware.Build) (middleware.Instance, error) { return middleware.Instance{}, nil }
	for _, tc := range []struct {
		name string
		m    middleware.Module
		want string
	}{
		{"empty name", middleware.Module{New: build}, "empty name"},
		{"taken", middleware.Module{Name: "cors", New: build}, "registered twice"},
		{"no New", middleware.Module{Name: "test_no_new"}, "no New"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r, _ := recover().(string)
				if !strings.Contains(r, tc.want) {
					t.Fatalf("panic %q, want one about %q", r, tc.want)
				}
			}()
			middleware.Register(tc.m)
		})
	}
}
