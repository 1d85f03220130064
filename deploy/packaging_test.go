package deploy_test

// Packaging checks: the Makefile's release target, the Dockerfile and
// .dockerignore, the Helm chart (rendered with text/template and the few
// Sprig functions it uses, so the main module does not depend on Helm),
// the systemd unit, the CI workflow, and docs/configuration.md against the
// configuration schema. No Docker engine, cluster or systemd is needed.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rustygate/rustygate/config"
	_ "github.com/rustygate/rustygate/l7/middleware/standard"
)

// repoRoot is the module root, seen from this package's directory.
const repoRoot = ".."

func pkgRead(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// Makefile

// makeVars returns the Makefile's simple variable definitions (NAME := v,
// NAME ?= v, NAME = v) and its rules' recipes, by target.
func parseMakefile(t *testing.T) (vars map[string]string, recipes map[string]string) {
	t.Helper()
	src := pkgRead(t, "Makefile")
	src = strings.ReplaceAll(src, "\\\n", " ")
	vars, recipes = map[string]string{}, map[string]string{}
	varRE := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)
	ruleRE := regexp.MustCompile(`^([A-Za-z0-9_.-]+)\s*:([^=].*)?$`)
	target := ""
	for _, line := range strings.Split(src, "\n") {
		switch {
		case strings.HasPrefix(line, "\t"):
			if target != "" {
				recipes[target] += strings.TrimSpace(line) + "\n"
			}
		case strings.HasPrefix(strings.TrimSpace(line), "#"), strings.TrimSpace(line) == "":
		default:
			if m := varRE.FindStringSubmatch(line); m != nil {
				vars[m[1]] = strings.TrimSpace(m[2])
				target = ""
			} else if m := ruleRE.FindStringSubmatch(line); m != nil {
				target = m[1]
				if _, ok := recipes[target]; !ok {
					recipes[target] = ""
				}
			} else {
				target = ""
			}
		}
	}
	return vars, recipes
}

// buildFlagsOK reports what is missing from a go build command line (or
// recipe) for it to build the way `make build` does.
func buildFlagsMissing(cmd string, ldflags string) []string {
	var missing []string
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-ldflags"} {
		if !strings.Contains(cmd, want) {
			missing = append(missing, want)
		}
	}
	if ldflags != "" && !strings.Contains(cmd, ldflags) {
		missing = append(missing, ldflags)
	}
	return missing
}

func TestMakefileBuildAndRelease(t *testing.T) {
	vars, recipes := parseMakefile(t)
	ld := vars["LDFLAGS"]
	for _, want := range []string{"-s", "-w", "-X main.version=$(VERSION)", "-X main.commit=$(COMMIT)"} {
		if !strings.Contains(" "+ld+" ", " "+want+" ") && !strings.Contains(ld, want) {
			t.Errorf("LDFLAGS %q lacks %q", ld, want)
		}
	}
	build, ok := recipes["build"]
	if !ok {
		t.Fatal("Makefile has no build target")
	}
	if m := buildFlagsMissing(build, `-ldflags "$(LDFLAGS)"`); len(m) > 0 {
		t.Errorf("build recipe lacks %v:\n%s", m, build)
	}
	rel, ok := recipes["release"]
	if !ok {
		t.Fatal("Makefile has no release target")
	}
	if m := buildFlagsMissing(rel, `-ldflags "$(LDFLAGS)"`); len(m) > 0 {
		t.Errorf("release recipe lacks %v (it must build as build does):\n%s", m, rel)
	}
	for _, want := range []string{"GOOS=", "GOARCH=", "./cmd/rustygate", "$(DIST)", "SHA256SUMS"} {
		if !strings.Contains(rel, want) {
			t.Errorf("release recipe lacks %q", want)
		}
	}
	platforms := strings.Fields(vars["RELEASE_PLATFORMS"])
	for _, p := range []string{"linux/amd64", "linux/arm64", "darwin/arm64", "darwin/amd64"} {
		if !slices.Contains(platforms, p) {
			t.Errorf("RELEASE_PLATFORMS %v lacks %s", platforms, p)
		}
	}
	if vars["DIST"] != "dist" {
		t.Errorf("DIST = %q, want dist", vars["DIST"])
	}
}

// TestBPFObjectsForReleaseArches checks that the generated eBPF bindings
// build for every Linux architecture the release ships: bpfel objects are
// little endian, which amd64 and arm64 both are.
func TestBPFObjectsForReleaseArches(t *testing.T) {
	for _, f := range mustGlob(t, filepath.Join(repoRoot, "bpf", "*_bpfel.go")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		i := strings.Index(src, "//go:build")
		if i < 0 {
			t.Errorf("%s has no build constraint", f)
			continue
		}
		line, _, _ := strings.Cut(src[i:], "\n")
		for _, arch := range []string{"amd64", "arm64"} {
			if !regexp.MustCompile(`\b` + arch + `\b`).MatchString(line) {
				t.Errorf("%s is not built for %s: %s", filepath.Base(f), arch, line)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Dockerfile

type dockerInstr struct {
	cmd  string // upper case
	args string
	line int
}

type dockerStage struct {
	from, name string
	instrs     []dockerInstr
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continuation lines and dropping comments.
func parseDockerfile(t *testing.T, src string) (globalArgs map[string]string, stages []*dockerStage) {
	t.Helper()
	globalArgs = map[string]string{}
	lines := strings.Split(src, "\n")
	for i := 0; i < len(lines); i++ {
		start := i + 1
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				next = ""
			}
			l = strings.TrimSuffix(l, "\\") + " " + next
		}
		cmd, args, _ := strings.Cut(l, " ")
		in := dockerInstr{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " "), line: start}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			st := &dockerStage{}
			for _, w := range f {
				if !strings.HasPrefix(w, "--") {
					st.from = w
					break
				}
			}
			if n := len(f); n >= 3 && strings.EqualFold(f[n-2], "AS") {
				st.name = f[n-1]
			}
			stages = append(stages, st)
		case len(stages) == 0:
			if in.cmd == "ARG" {
				k, v, _ := strings.Cut(in.args, "=")
				globalArgs[k] = v
			}
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	return globalArgs, stages
}

func expandArgs(s string, args map[string]string) string {
	return os.Expand(s, func(k string) string { return args[k] })
}

func TestDockerfile(t *testing.T) {
	src := pkgRead(t, "Dockerfile")
	args, stages := parseDockerfile(t, src)
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]
	if from := expandArgs(builder.from, args); !strings.HasPrefix(from, "golang:1.26") {
		t.Errorf("builder stage FROM %s (%s), want golang:1.26", builder.from, from)
	}
	if builder.name != "builder" {
		t.Errorf("first stage is named %q, want builder", builder.name)
	}
	if final.from != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.from)
	}
	names := map[string]bool{}
	for _, s := range stages {
		names[s.name] = true
	}
	var user string
	var exposed []string
	copiedFromBuilder := false
	for si, s := range stages {
		for _, in := range s.instrs {
			switch in.cmd {
			case "ADD":
				if regexp.MustCompile(`(?i)(https?://|git@|\.git\b)`).MatchString(in.args) {
					t.Errorf("line %d: ADD of a remote source: %s", in.line, in.args)
				}
			case "COPY":
				if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args); m != nil {
					if !names[m[1]] {
						t.Errorf("line %d: COPY --from=%s names no stage", in.line, m[1])
					}
					if si == len(stages)-1 && m[1] == "builder" {
						copiedFromBuilder = true
					}
				}
			case "USER":
				if si == len(stages)-1 {
					user = in.args
				}
			case "EXPOSE":
				if si == len(stages)-1 {
					exposed = append(exposed, strings.Fields(in.args)...)
				}
			case "HEALTHCHECK":
				t.Errorf("line %d: HEALTHCHECK cannot run in distroless (no shell, no curl)", in.line)
			}
		}
	}
	if !copiedFromBuilder {
		t.Error("the final stage copies nothing from the builder stage")
	}
	uid, _, _ := strings.Cut(user, ":")
	if user == "" || uid == "root" || uid == "0" {
		t.Errorf("final USER %q: the image must run as a non-root user by default", user)
	}
	if !slices.Contains(exposed, "8080") {
		t.Errorf("EXPOSE lacks 8080 (got %v)", exposed)
	}
	// The admin port is published only on purpose (docker run -P publishes
	// every exposed port on every host address).
	if slices.Contains(exposed, "8081") {
		t.Errorf("EXPOSE %v publishes the admin port with docker run -P", exposed)
	}
	// The image's configuration is config/container.yaml: no backend to
	// wait for, the admin listener on the container's address.
	if !strings.Contains(src, "cp config/container.yaml /out/etc/rustygate/config.yaml") {
		t.Error("the image's /etc/rustygate/config.yaml is not config/container.yaml")
	}
	t.Setenv("RUSTYGATE_ADMIN_TOKEN", "")
	cc, err := config.Load(filepath.Join("..", "config", "container.yaml"))
	if err != nil {
		t.Fatalf("config/container.yaml: %v", err)
	}
	if cc.Server.Listen != ":8080" || cc.Admin.Listen != "0.0.0.0:8081" || len(cc.Routes) != 0 {
		t.Errorf("config/container.yaml: server.listen %q, admin.listen %q, %d routes; want :8080, 0.0.0.0:8081 and no route to a backend the image lacks",
			cc.Server.Listen, cc.Admin.Listen, len(cc.Routes))
	}

	// The binary is built as `make build` builds it: either by that target
	// (then the Makefile's recipe has the flags) or by a go build with the
	// same flags.
	vars, recipes := parseMakefile(t)
	var buildRun string
	for _, in := range builder.instrs {
		if in.cmd == "RUN" && (strings.Contains(in.args, "make build") || strings.Contains(in.args, "go build")) {
			buildRun = in.args
		}
	}
	switch {
	case buildRun == "":
		t.Fatal("the builder stage runs neither make build nor go build")
	case strings.Contains(buildRun, "make build"):
		if m := buildFlagsMissing(recipes["build"], `-ldflags "$(LDFLAGS)"`); len(m) > 0 {
			t.Errorf("Makefile build recipe lacks %v", m)
		}
		for _, v := range []string{"VERSION=", "COMMIT=", "BIN="} {
			if !strings.Contains(buildRun, v) {
				t.Errorf("make build in the Dockerfile does not set %s: %s", v, buildRun)
			}
		}
	default:
		ld := strings.NewReplacer("$(VERSION)", "${VERSION}", "$(COMMIT)", "${COMMIT}").Replace(vars["LDFLAGS"])
		if m := buildFlagsMissing(buildRun, ld); len(m) > 0 {
			t.Errorf("go build in the Dockerfile lacks %v: %s", m, buildRun)
		}
	}

	// The kernel-mode recipe is documented in the file itself.
	for _, want := range []string{"--cap-add BPF", "--cap-add NET_ADMIN", "--cap-add PERFMON", "/sys/fs/bpf:/sys/fs/bpf", "/livez", "/readyz", "--user 0"} {
		if !strings.Contains(src, want) {
			t.Errorf("Dockerfile comments do not mention %q", want)
		}
	}
	// With the host's bpffs mounted in, the kernel datapath needs no
	// CAP_SYS_ADMIN: the recipe must not grant it.
	if strings.Contains(src, "--cap-add SYS_ADMIN") {
		t.Error("the Dockerfile's kernel-mode recipe grants SYS_ADMIN; BPF, NET_ADMIN and PERFMON suffice")
	}
}

// dockerignoreMatcher implements the .dockerignore rules the file uses:
// patterns relative to the context root, "*" and "?" within a path
// element, "**" across elements, a match on a directory excluding all
// below it, "!" re-including, and the last matching pattern winning.
type dockerignoreMatcher struct {
	pats []struct {
		re  *regexp.Regexp
		neg bool
	}
}

func newDockerignore(src string) *dockerignoreMatcher {
	m := &dockerignoreMatcher{}
	for _, l := range strings.Split(src, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		neg := strings.HasPrefix(l, "!")
		l = strings.Trim(strings.TrimPrefix(l, "!"), "/")
		var b strings.Builder
		b.WriteString("^")
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case strings.HasPrefix(l[i:], "**/"):
				b.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(l[i:], "**"):
				b.WriteString(".*")
				i++
			case c == '*':
				b.WriteString("[^/]*")
			case c == '?':
				b.WriteString("[^/]")
			default:
				b.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		b.WriteString("(/.*)?$")
		m.pats = append(m.pats, struct {
			re  *regexp.Regexp
			neg bool
		}{regexp.MustCompile(b.String()), neg})
	}
	return m
}

func (m *dockerignoreMatcher) excluded(rel string) bool {
	ex := false
	for _, p := range m.pats {
		if p.re.MatchString(rel) {
			ex = !p.neg
		}
	}
	return ex
}

// TestDockerignore checks that the build context keeps every file `make
// build` needs: the Makefile, go.mod, go.sum and every file of every
// package of the binary (on every platform it is built for), embedded
// files included.
func TestDockerignore(t *testing.T) {
	m := newDockerignore(pkgRead(t, ".dockerignore"))
	for _, p := range []string{".git/config", "bin/rustygate", "dist/SHA256SUMS", "test/kernels/out/x"} {
		if !m.excluded(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
	need := []string{"Makefile", "go.mod", "go.sum", "config/container.yaml"}
	abs, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, goos := range []string{"linux", "darwin"} {
		cmd := exec.Command("go", "list", "-deps", "-f",
			`{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}}|{{join .EmbedFiles ","}}{{end}}{{end}}`,
			"./cmd/rustygate")
		cmd.Dir = abs
		cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("go list: %v\n%s", err, ee.Stderr)
			}
			t.Fatalf("go list: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			dir, rest, ok := strings.Cut(line, "|")
			if !ok {
				continue
			}
			rel, err := filepath.Rel(abs, dir)
			if err != nil {
				t.Fatal(err)
			}
			goFiles, embeds, _ := strings.Cut(rest, "|")
			for _, f := range append(strings.Split(goFiles, ","), strings.Split(embeds, ",")...) {
				if f != "" {
					need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
				}
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, p := range need {
		if m.excluded(p) {
			t.Errorf(".dockerignore leaves out %s, which the build needs", p)
		}
	}
}

// ---------------------------------------------------------------------------
// Helm chart

const chartDir = "helm/rustygate"

// helmValue converts a YAML document to the types Helm's values have:
// what JSON gives (maps of string to any, []any, float64 numbers).
func helmValue(t *testing.T, src []byte) map[string]any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// mergeValues merges override into base, recursively for maps, as helm's
// --values and --set do.
func mergeValues(base, override map[string]any) map[string]any {
	out := maps.Clone(base)
	for k, v := range override {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = mergeValues(bm, om)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func deepCopyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = deepCopyValue(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopyValue(e)
		}
		return out
	}
	return v
}

func emptyValue(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Bool:
		return !rv.Bool()
	case reflect.Int, reflect.Int64, reflect.Int32:
		return rv.Int() == 0
	case reflect.Float64, reflect.Float32:
		return rv.Float() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

func toInt(v any) int {
	switch v := v.(type) {
	case int:
		return v
	case int64:
		return int(v)
	case float64:
		return int(v)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	case bool:
		if v {
			return 1
		}
	}
	return 0
}

func toStr(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case error:
		return v.Error()
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

// helmToYAML is Helm's toYaml: the value as YAML, keys sorted, without
// the final newline. (Helm's encoder does not indent list items under
// their key; yaml.v3 does. Both read back as the same YAML.)
func helmToYAML(v any) (string, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	enc.Close()
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// helmFailure is the error the fail function raises.
type helmFailure struct{ msg string }

func (f helmFailure) Error() string { return f.msg }

// helmFuncs are the Sprig and Helm functions the chart uses, with Sprig's
// semantics. Using one that is not here fails the test at parse time.
func helmFuncs(tpl **template.Template) template.FuncMap {
	return template.FuncMap{
		"include": func(name string, data any) (string, error) {
			var b strings.Builder
			err := (*tpl).ExecuteTemplate(&b, name, data)
			return b.String(), err
		},
		"toYaml": helmToYAML,
		"indent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"nindent": func(n int, s string) string {
			pad := strings.Repeat(" ", n)
			return "\n" + pad + strings.ReplaceAll(s, "\n", "\n"+pad)
		},
		"quote": func(v ...any) string {
			out := make([]string, 0, len(v))
			for _, e := range v {
				if e != nil {
					out = append(out, strconv.Quote(toStr(e)))
				}
			}
			return strings.Join(out, " ")
		},
		"default": func(d any, given ...any) any {
			if len(given) == 0 || emptyValue(given[0]) {
				return d
			}
			return given[0]
		},
		"dict": func(kv ...any) map[string]any {
			out := map[string]any{}
			for i := 0; i+1 < len(kv); i += 2 {
				out[toStr(kv[i])] = kv[i+1]
			}
			return out
		},
		"list":     func(v ...any) []any { return v },
		"deepCopy": deepCopyValue,
		"get": func(m map[string]any, k string) any {
			if v, ok := m[k]; ok {
				return v
			}
			return ""
		},
		"set": func(m map[string]any, k string, v any) map[string]any {
			m[k] = v
			return m
		},
		"hasKey": func(m map[string]any, k string) bool { _, ok := m[k]; return ok },
		"has": func(needle any, haystack any) bool {
			rv := reflect.ValueOf(haystack)
			if rv.Kind() != reflect.Slice {
				return false
			}
			for i := 0; i < rv.Len(); i++ {
				if reflect.DeepEqual(rv.Index(i).Interface(), needle) {
					return true
				}
			}
			return false
		},
		"ternary": func(vt, vf any, v bool) any {
			if v {
				return vt
			}
			return vf
		},
		"kindIs": func(kind string, v any) bool {
			if v == nil {
				return kind == "invalid"
			}
			return reflect.ValueOf(v).Kind().String() == kind
		},
		"fail": func(msg string) (string, error) { return "", helmFailure{msg} },
		"add": func(v ...any) int64 {
			var sum int64
			for _, e := range v {
				sum += int64(toInt(e))
			}
			return sum
		},
		"int":      toInt,
		"toString": toStr,
		"join": func(sep string, v any) string {
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Slice {
				return toStr(v)
			}
			parts := make([]string, rv.Len())
			for i := range parts {
				parts[i] = toStr(rv.Index(i).Interface())
			}
			return strings.Join(parts, sep)
		},
		"trunc": func(n int, s string) string {
			if n >= 0 && len(s) > n {
				return s[:n]
			}
			return s
		},
		"trimSuffix": func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"contains":   func(sub, s string) bool { return strings.Contains(s, sub) },
		"replace":    func(old, new, s string) string { return strings.ReplaceAll(s, old, new) },
	}
}

// renderChart renders every template of the chart with the chart's
// values.yaml merged with overrides, as `helm template` would, and
// returns the output of each template by file name.
func renderChart(t *testing.T, overrides map[string]any) (map[string]string, error) {
	t.Helper()
	chart := helmValue(t, []byte(pkgRead(t, filepath.Join("deploy", chartDir, "Chart.yaml"))))
	values := helmValue(t, []byte(pkgRead(t, filepath.Join("deploy", chartDir, "values.yaml"))))
	values = mergeValues(values, overrides)
	top := map[string]any{
		"Values": values,
		"Release": map[string]any{
			"Name": "edge", "Namespace": "gateway", "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]any{
			"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"],
		},
	}
	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates in %s (%v)", chartDir, err)
	}
	slices.Sort(files)
	var root *template.Template
	root = template.New("chart").Option("missingkey=zero").Funcs(helmFuncs(&root))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := root.New("templates/" + filepath.Base(f)).Parse(string(b)); err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
	}
	out := map[string]string{}
	for _, f := range files {
		name := "templates/" + filepath.Base(f)
		if strings.HasPrefix(filepath.Base(f), "_") {
			continue
		}
		var b strings.Builder
		if err := root.ExecuteTemplate(&b, name, top); err != nil {
			return nil, err
		}
		out[name] = b.String()
	}
	return out, nil
}

// manifests parses the rendered YAML templates into documents.
func manifests(t *testing.T, rendered map[string]string) []map[string]any {
	t.Helper()
	var docs []map[string]any
	for _, name := range slices.Sorted(maps.Keys(rendered)) {
		text := rendered[name]
		if strings.Contains(text, "<no value>") {
			t.Errorf("%s renders a missing value:\n%s", name, text)
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := yaml.NewDecoder(strings.NewReader(text))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: invalid YAML: %v\n%s", name, err, text)
			}
			if doc == nil {
				continue
			}
			for _, k := range []string{"apiVersion", "kind", "metadata"} {
				if doc[k] == nil {
					t.Errorf("%s: document without %s", name, k)
				}
			}
			docs = append(docs, doc)
		}
	}
	return docs
}

// dig follows a path of map keys and list indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func byKind(docs []map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, d := range docs {
		out[d["kind"].(string)] = d
	}
	return out
}

func findNamed(list any, name string) map[string]any {
	l, _ := list.([]any)
	for _, e := range l {
		if m, ok := e.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

func strList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func TestHelmChart(t *testing.T) {
	chart := helmValue(t, []byte(pkgRead(t, filepath.Join("deploy", chartDir, "Chart.yaml"))))
	if chart["apiVersion"] != "v2" || chart["name"] != "rustygate" || chart["version"] == nil || chart["appVersion"] == nil {
		t.Errorf("Chart.yaml: want apiVersion v2, name rustygate, version and appVersion; got %v", chart)
	}

	cases := []struct {
		name      string
		overrides map[string]any
		workload  string
		kernel    bool
		hostNet   bool
		sysAdmin  bool // SYS_ADMIN among the added capabilities
	}{
		{"deployment", map[string]any{}, "Deployment", false, false, false},
		{"daemonset", map[string]any{"mode": "daemonset"}, "DaemonSet", false, false, false},
		{"deployment-kernel", map[string]any{
			"kernelDatapath": map[string]any{"enabled": true},
		}, "Deployment", true, false, false},
		{"daemonset-kernel", map[string]any{
			"mode":           "daemonset",
			"kernelDatapath": map[string]any{"enabled": true},
			"config": map[string]any{"datapath": map[string]any{
				"interfaces":        []any{"eth0"},
				"kernel_rate_limit": map[string]any{"rate": 20.0, "burst": 40.0, "deny": []any{"192.0.2.0/24"}},
			}},
		}, "DaemonSet", true, true, false},
		// A user who adds SYS_ADMIN (for `rustygate bpf status` in the pod).
		{"daemonset-kernel-with-sys-admin", map[string]any{
			"mode":           "daemonset",
			"hostNetwork":    false,
			"kernelDatapath": map[string]any{"enabled": true, "capabilities": []any{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN"}},
		}, "DaemonSet", true, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rendered, err := renderChart(t, tc.overrides)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(rendered["templates/NOTES.txt"]) == "" {
				t.Error("NOTES.txt renders empty")
			}
			docs := manifests(t, rendered)
			kinds := byKind(docs)
			want := []string{"ConfigMap", "Service", tc.workload}
			if tc.workload == "Deployment" {
				want = append(want, "PodDisruptionBudget") // 2 replicas
			}
			got := slices.Sorted(maps.Keys(kinds))
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("kinds %v, want %v", got, want)
			}
			for _, d := range docs {
				if name := dig(d, "metadata", "name"); name != "edge-rustygate" {
					t.Errorf("%s named %v, want edge-rustygate", d["kind"], name)
				}
			}

			w := kinds[tc.workload]
			pod := dig(w, "spec", "template", "spec")
			sel := dig(w, "spec", "selector", "matchLabels").(map[string]any)
			labels := dig(w, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("pod label %s = %v, selector wants %v", k, labels[k], v)
				}
			}
			if svcSel := dig(kinds["Service"], "spec", "selector"); !reflect.DeepEqual(svcSel, any(sel)) {
				t.Errorf("Service selector %v, workload selector %v", svcSel, sel)
			}
			if tc.workload == "Deployment" && dig(w, "spec", "replicas") != 2 {
				t.Errorf("replicas %v, want 2", dig(w, "spec", "replicas"))
			}

			c := dig(pod, "containers", 0)
			if c == nil {
				t.Fatal("no container")
			}
			if img := dig(c, "image"); img != "ghcr.io/rustygate/rustygate:"+fmt.Sprint(chart["appVersion"]) {
				t.Errorf("image %v", img)
			}
			ports := map[string]any{}
			for _, p := range dig(c, "ports").([]any) {
				ports[dig(p, "name").(string)] = dig(p, "containerPort")
			}
			if ports["http"] != 8080 || ports["admin"] != 8081 {
				t.Errorf("container ports %v, want http 8080 and admin 8081", ports)
			}
			for probe, path := range map[string]string{"livenessProbe": "/livez", "readinessProbe": "/readyz"} {
				if dig(c, probe, "httpGet", "path") != path || dig(c, probe, "httpGet", "port") != "admin" {
					t.Errorf("%s = %v, want GET %s on the admin port", probe, dig(c, probe), path)
				}
			}
			// SIGTERM: /readyz 503 and 5 s of drain delay, then 30 s for
			// requests in flight, within the grace period.
			if g := dig(pod, "terminationGracePeriodSeconds"); g != 40 {
				t.Errorf("terminationGracePeriodSeconds %v, want 5 + 30 + 5 = 40", g)
			}
			if dig(c, "lifecycle") != nil {
				t.Errorf("lifecycle %v: the default drain is the gateway's drain_delay, no preStop hook", dig(c, "lifecycle"))
			}
			if pdb := kinds["PodDisruptionBudget"]; pdb != nil {
				if dig(pdb, "spec", "maxUnavailable") != 1 || !reflect.DeepEqual(dig(pdb, "spec", "selector", "matchLabels"), any(sel)) {
					t.Errorf("PodDisruptionBudget spec %v, want maxUnavailable 1 and the workload's selector", dig(pdb, "spec"))
				}
			}
			if env := findNamed(dig(c, "env"), "POD_NAME"); env == nil {
				t.Error("no POD_NAME in the environment")
			}
			if env := findNamed(dig(c, "env"), "RUSTYGATE_ADMIN_TOKEN"); env != nil {
				t.Errorf("RUSTYGATE_ADMIN_TOKEN set without a Secret: %v", env)
			}

			sc := dig(c, "securityContext")
			add := strList(dig(sc, "capabilities", "add"))
			if slices.Contains(add, "SYS_ADMIN") != tc.sysAdmin {
				t.Errorf("capabilities.add %v: SYS_ADMIN present %v, want %v (the defaults do not grant it)", add, !tc.sysAdmin, tc.sysAdmin)
			}
			// The API server refuses SYS_ADMIN with allowPrivilegeEscalation: false.
			if dig(sc, "allowPrivilegeEscalation") != tc.sysAdmin || dig(sc, "readOnlyRootFilesystem") != true {
				t.Errorf("container securityContext %v", sc)
			}
			if drop := strList(dig(sc, "capabilities", "drop")); !slices.Equal(drop, []string{"ALL"}) {
				t.Errorf("capabilities.drop %v, want [ALL]", drop)
			}
			mounts := dig(c, "volumeMounts")
			cfgMount := findNamed(mounts, "config")
			if cfgMount == nil || cfgMount["mountPath"] != "/etc/rustygate" || cfgMount["subPath"] != nil {
				t.Errorf("config mount %v: want the directory /etc/rustygate, no subPath (a subPath mount never sees ConfigMap updates)", cfgMount)
			}
			if dig(findNamed(dig(pod, "volumes"), "config"), "configMap", "name") != "edge-rustygate" {
				t.Errorf("config volume %v", findNamed(dig(pod, "volumes"), "config"))
			}
			bpfMount := findNamed(mounts, "bpffs")
			bpfVol := findNamed(dig(pod, "volumes"), "bpffs")
			if tc.kernel {
				for _, cp := range []string{"BPF", "NET_ADMIN", "PERFMON"} {
					if !slices.Contains(add, cp) {
						t.Errorf("kernel mode: capabilities.add %v lacks %s", add, cp)
					}
				}
				if dig(pod, "securityContext", "runAsUser") != 0 {
					t.Errorf("kernel mode: runAsUser %v, want 0", dig(pod, "securityContext", "runAsUser"))
				}
				if bpfMount == nil || bpfMount["mountPath"] != "/sys/fs/bpf" {
					t.Errorf("kernel mode: bpffs mount %v", bpfMount)
				}
				if dig(bpfVol, "hostPath", "path") != "/sys/fs/bpf" {
					t.Errorf("kernel mode: bpffs volume %v", bpfVol)
				}
			} else {
				if len(add) > 0 {
					t.Errorf("userspace mode adds capabilities %v", add)
				}
				if dig(pod, "securityContext", "runAsNonRoot") != true || dig(pod, "securityContext", "runAsUser") == 0 {
					t.Errorf("userspace mode: pod securityContext %v, want non-root", dig(pod, "securityContext"))
				}
				if bpfMount != nil || bpfVol != nil {
					t.Error("userspace mode mounts bpffs")
				}
			}
			if hn := dig(pod, "hostNetwork") == true; hn != tc.hostNet {
				t.Errorf("hostNetwork %v, want %v", hn, tc.hostNet)
			}
			if tc.hostNet && dig(pod, "dnsPolicy") != "ClusterFirstWithHostNet" {
				t.Errorf("dnsPolicy %v with the host network", dig(pod, "dnsPolicy"))
			}

			// The ConfigMap holds a configuration the gateway accepts.
			data, _ := dig(kinds["ConfigMap"], "data", "config.yaml").(string)
			t.Setenv("POD_NAME", "edge-rustygate-5d9c7-x2x4z")
			t.Setenv("RUSTYGATE_ADMIN_TOKEN", "")
			cfg, err := config.Parse("config.yaml", []byte(data))
			if err != nil {
				t.Fatalf("the ConfigMap's config.yaml does not parse:\n%v\n%s", err, data)
			}
			// The gateway's default admin address is loopback: the pod
			// listens on its own addresses for the kubelet and Prometheus.
			if cfg.Server.Listen != ":8080" || cfg.Admin.Listen != "0.0.0.0:8081" || cfg.Admin.Token != "" {
				t.Errorf("server.listen %q, admin.listen %q, admin.token %q", cfg.Server.Listen, cfg.Admin.Listen, cfg.Admin.Token)
			}
			if cfg.Server.DrainDelay.D() != 5*time.Second || cfg.Server.ShutdownTimeout.D() != 30*time.Second {
				t.Errorf("server.drain_delay %v, shutdown_timeout %v; want 5s and 30s", cfg.Server.DrainDelay, cfg.Server.ShutdownTimeout)
			}
			wantMode := config.DatapathUserspace
			if tc.kernel {
				wantMode = config.DatapathKernel
			}
			if cfg.Datapath.Mode != wantMode {
				t.Errorf("datapath.mode %q, want %q", cfg.Datapath.Mode, wantMode)
			}
			wantBPFFS := "/sys/fs/bpf/rustygate"
			if tc.kernel && tc.workload == "Deployment" {
				wantBPFFS = "/sys/fs/bpf/rustygate-edge-rustygate-5d9c7-x2x4z"
			}
			if cfg.Datapath.BPFFS != wantBPFFS {
				t.Errorf("datapath.bpffs %q, want %q", cfg.Datapath.BPFFS, wantBPFFS)
			}
			if len(cfg.Routes) == 0 {
				t.Error("no routes in the default configuration")
			}
		})
	}

	t.Run("secret-and-servicemonitor", func(t *testing.T) {
		rendered, err := renderChart(t, map[string]any{
			"adminToken":     map[string]any{"value": "s3cr3t-token"},
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		kinds := byKind(manifests(t, rendered))
		sm := kinds["ServiceMonitor"]
		if sm == nil || sm["apiVersion"] != "monitoring.coreos.com/v1" {
			t.Fatalf("ServiceMonitor %v", sm)
		}
		if ep := dig(sm, "spec", "endpoints", 0); dig(ep, "port") != "admin" || dig(ep, "path") != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %v, want /metrics on the admin port", ep)
		}
		if dig(sm, "metadata", "labels", "release") != "prom" {
			t.Errorf("ServiceMonitor labels %v", dig(sm, "metadata", "labels"))
		}
		svcPorts := dig(kinds["Service"], "spec", "ports")
		if findNamed(svcPorts, "admin") == nil || findNamed(svcPorts, "http") == nil {
			t.Errorf("Service ports %v, want http and admin", svcPorts)
		}
		sec := kinds["Secret"]
		if dig(sec, "stringData", "token") != "s3cr3t-token" {
			t.Errorf("Secret %v", sec)
		}
		c := dig(kinds["Deployment"], "spec", "template", "spec", "containers", 0)
		ref := dig(findNamed(dig(c, "env"), "RUSTYGATE_ADMIN_TOKEN"), "valueFrom", "secretKeyRef")
		if dig(ref, "name") != dig(sec, "metadata", "name") || dig(ref, "key") != "token" {
			t.Errorf("RUSTYGATE_ADMIN_TOKEN from %v, want the Secret %v", ref, dig(sec, "metadata", "name"))
		}
		data, _ := dig(kinds["ConfigMap"], "data", "config.yaml").(string)
		t.Setenv("RUSTYGATE_ADMIN_TOKEN", "s3cr3t-token")
		cfg, err := config.Parse("config.yaml", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Admin.Token != "s3cr3t-token" {
			t.Errorf("admin.token %q, want it from RUSTYGATE_ADMIN_TOKEN", cfg.Admin.Token)
		}
	})

	t.Run("token-file", func(t *testing.T) {
		tok := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tok, []byte("from-a-file\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		rendered, err := renderChart(t, map[string]any{"config": map[string]any{"admin": map[string]any{"token_file": tok}}})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := dig(byKind(manifests(t, rendered))["ConfigMap"], "data", "config.yaml").(string)
		t.Setenv("RUSTYGATE_ADMIN_TOKEN", "")
		cfg, err := config.Parse("config.yaml", []byte(data))
		if err != nil {
			t.Fatalf("admin.token_file in config: %v\n%s", err, data)
		}
		if cfg.Admin.Token != "from-a-file" {
			t.Errorf("admin.token %q, want the file's", cfg.Admin.Token)
		}
	})

	t.Run("existing-secret", func(t *testing.T) {
		rendered, err := renderChart(t, map[string]any{"adminToken": map[string]any{"existingSecret": "gw-admin", "secretKey": "tok"}})
		if err != nil {
			t.Fatal(err)
		}
		kinds := byKind(manifests(t, rendered))
		if kinds["Secret"] != nil {
			t.Error("a Secret is created although existingSecret is set")
		}
		c := dig(kinds["Deployment"], "spec", "template", "spec", "containers", 0)
		ref := dig(findNamed(dig(c, "env"), "RUSTYGATE_ADMIN_TOKEN"), "valueFrom", "secretKeyRef")
		if dig(ref, "name") != "gw-admin" || dig(ref, "key") != "tok" {
			t.Errorf("RUSTYGATE_ADMIN_TOKEN from %v", ref)
		}
	})

	t.Run("drain-and-disruption-budget", func(t *testing.T) {
		for _, tc := range []struct {
			name      string
			overrides map[string]any
			grace     int
			preStop   any
			pdb       map[string]any // nil: none
		}{
			{"one-replica", map[string]any{"replicaCount": 1}, 40, nil, nil},
			{"prestop-sleep", map[string]any{"preStopSleepSeconds": 3, "drainDelaySeconds": 0, "shutdownTimeoutSeconds": 60}, 68, 3, map[string]any{"maxUnavailable": 1}},
			{"explicit-grace-and-min-available", map[string]any{"terminationGracePeriodSeconds": 120, "replicaCount": 3,
				"podDisruptionBudget": map[string]any{"minAvailable": 2}}, 120, nil, map[string]any{"minAvailable": 2}},
			{"pdb-off", map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}}, 40, nil, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rendered, err := renderChart(t, tc.overrides)
				if err != nil {
					t.Fatal(err)
				}
				kinds := byKind(manifests(t, rendered))
				pod := dig(kinds["Deployment"], "spec", "template", "spec")
				if g := dig(pod, "terminationGracePeriodSeconds"); g != tc.grace {
					t.Errorf("terminationGracePeriodSeconds %v, want %d", g, tc.grace)
				}
				if s := dig(pod, "containers", 0, "lifecycle", "preStop", "sleep", "seconds"); s != tc.preStop {
					t.Errorf("preStop sleep %v, want %v", s, tc.preStop)
				}
				pdb := kinds["PodDisruptionBudget"]
				if (pdb == nil) != (tc.pdb == nil) {
					t.Fatalf("PodDisruptionBudget %v, want spec %v", pdb, tc.pdb)
				}
				for k, v := range tc.pdb {
					if dig(pdb, "spec", k) != v {
						t.Errorf("PodDisruptionBudget spec %v, want %s: %v", dig(pdb, "spec"), k, v)
					}
				}
				if pdb != nil && len(dig(pdb, "spec").(map[string]any)) != 2 {
					t.Errorf("PodDisruptionBudget spec %v: want one of minAvailable and maxUnavailable, and the selector", dig(pdb, "spec"))
				}
			})
		}
	})

	for _, bad := range []struct {
		name      string
		overrides map[string]any
		want      string
	}{
		{"grace-too-short", map[string]any{"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds (20) is shorter"},
		{"drain-in-config", map[string]any{"config": map[string]any{"server": map[string]any{"drain_delay": "3s"}}}, "drainDelaySeconds"},
		{"kernel-mode-without-privileges", map[string]any{"config": map[string]any{"datapath": map[string]any{"mode": "kernel"}}}, "kernelDatapath.enabled"},
		{"admin-off", map[string]any{"config": map[string]any{"admin": map[string]any{"listen": "off"}}}, "admin.listen"},
		{"unknown-mode", map[string]any{"mode": "statefulset"}, "mode must be"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			_, err := renderChart(t, bad.overrides)
			var f helmFailure
			if !errors.As(err, &f) || !strings.Contains(f.msg, bad.want) {
				t.Errorf("render error %v, want a failure mentioning %q", err, bad.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// systemd unit

// parseUnit returns the directives of a systemd unit file, by section.
func parseUnit(src string) map[string]map[string][]string {
	out := map[string]map[string][]string{}
	sec := ""
	for _, l := range strings.Split(strings.ReplaceAll(src, "\\\n", " "), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			sec = l[1 : len(l)-1]
			if out[sec] == nil {
				out[sec] = map[string][]string{}
			}
		default:
			k, v, _ := strings.Cut(l, "=")
			out[sec][strings.TrimSpace(k)] = append(out[sec][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(pkgRead(t, "deploy/systemd/rustygate.service"))
	s := u["Service"]
	if s == nil || u["Unit"] == nil || u["Install"] == nil {
		t.Fatalf("want [Unit], [Service] and [Install] sections, got %v", slices.Collect(maps.Keys(u)))
	}
	one := func(k string) string {
		if len(s[k]) == 0 {
			t.Errorf("[Service] has no %s=", k)
			return ""
		}
		return s[k][len(s[k])-1]
	}
	if start := one("ExecStart"); !regexp.MustCompile(`rustygate run -c \S+`).MatchString(start) {
		t.Errorf("ExecStart=%s, want rustygate run -c FILE", start)
	}
	if r := one("ExecReload"); r != "/bin/kill -HUP $MAINPID" {
		t.Errorf("ExecReload=%s, want /bin/kill -HUP $MAINPID", r)
	}
	// The userspace datapath needs only to bind ports below 1024.
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if caps := strings.Join(s[k], " "); caps != "CAP_NET_BIND_SERVICE" {
			t.Errorf("%s=%s, want CAP_NET_BIND_SERVICE only (the kernel datapath's capabilities are in its drop-in)", k, caps)
		}
	}
	for _, pre := range s["ExecStartPre"] {
		if strings.Contains(pre, "bpf") {
			t.Errorf("ExecStartPre=%s: a userspace configuration must not need bpffs", pre)
		}
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "UMask": "0077", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
		"ProtectControlGroups": "yes", "ProtectProc": "invisible", "RestrictNamespaces": "yes",
		"RestrictSUIDSGID": "yes", "LockPersonality": "yes", "SystemCallArchitectures": "native",
		"SystemCallErrorNumber": "EPERM",
	} {
		if got := one(k); got != want {
			t.Errorf("%s=%s, want %s", k, got, want)
		}
	}
	if f := strings.Join(s["SystemCallFilter"], " | "); f != "@system-service | ~@privileged @resources" {
		t.Errorf("SystemCallFilter= %s, want @system-service, then ~@privileged @resources", f)
	}

	// The kernel datapath's drop-in adds what BPF needs, and only that.
	k := parseUnit(pkgRead(t, "deploy/systemd/rustygate.service.d/kernel-datapath.conf"))["Service"]
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		caps := strings.Fields(strings.Join(k[key], " "))
		for _, c := range []string{"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"} {
			if !slices.Contains(caps, c) {
				t.Errorf("kernel-datapath.conf: %s=%v lacks %s", key, caps, c)
			}
		}
		// bpffs is mounted before the service starts, so CAP_SYS_ADMIN
		// (needed only to mount it) is not granted.
		if slices.Contains(caps, "CAP_SYS_ADMIN") {
			t.Errorf("kernel-datapath.conf: %s=%v grants CAP_SYS_ADMIN; the kernel datapath needs only CAP_BPF CAP_NET_ADMIN CAP_PERFMON", key, caps)
		}
	}
	for key, want := range map[string]string{
		"LimitMEMLOCK": "infinity", "SystemCallFilter": "bpf", "ReadWritePaths": "/sys/fs/bpf",
		"RestrictAddressFamilies": "AF_NETLINK",
		"ExecStartPre":            "+/usr/bin/install -d -o rustygate -g rustygate -m 0700 /sys/fs/bpf/rustygate",
	} {
		if got := strings.Join(k[key], " | "); got != want {
			t.Errorf("kernel-datapath.conf: %s=%s, want %s", key, got, want)
		}
	}
	if a := parseUnit(pkgRead(t, "deploy/systemd/rustygate.service.d/kernel-datapath.conf"))["Unit"]["AssertPathIsMountPoint"]; !slices.Equal(a, []string{"/sys/fs/bpf"}) {
		t.Errorf("kernel-datapath.conf: AssertPathIsMountPoint=%v, want /sys/fs/bpf (fail clearly without bpffs)", a)
	}
	if user := one("User"); user == "" || user == "root" || user == "0" {
		t.Errorf("User=%q, want a non-root user", user)
	}
	if ks := s["KillSignal"]; ks != nil && ks[len(ks)-1] != "SIGTERM" {
		t.Errorf("KillSignal=%v: the gateway drains on SIGTERM", ks)
	}
	stop, err := time.ParseDuration(strings.ReplaceAll(one("TimeoutStopSec"), " ", ""))
	if err != nil || stop <= 30*time.Second {
		t.Errorf("TimeoutStopSec=%s: want longer than server.shutdown_timeout (30s)", one("TimeoutStopSec"))
	}
	systemdAnalyze(t)
}

// systemdAnalyze runs `systemd-analyze verify` on the unit, alone and with
// the kernel datapath's drop-in, and scores both with `systemd-analyze
// security --offline=true` (systemd 252 or later). CI installs systemd;
// elsewhere the check is skipped when the tool is missing.
func systemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is not installed (Debian package systemd); CI must check the unit with it")
		}
		t.Skip("systemd-analyze not installed (Debian package systemd)")
	}
	src := pkgRead(t, "deploy/systemd/rustygate.service")
	dropIn := pkgRead(t, "deploy/systemd/rustygate.service.d/kernel-datapath.conf")
	for _, tc := range []struct {
		name     string
		dropIn   bool
		maxScore float64
	}{{"userspace", false, 1.5}, {"kernel-datapath", true, 2.0}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// verify wants the executables to exist: the test binary
			// stands in for /usr/local/bin/rustygate.
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			unit := filepath.Join(dir, "rustygate.service")
			if err := os.WriteFile(unit, []byte(strings.ReplaceAll(src, "/usr/local/bin/rustygate", exe)), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.dropIn {
				if err := os.MkdirAll(unit+".d", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(unit+".d", "kernel-datapath.conf"), []byte(dropIn), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
			out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", unit).CombinedOutput()
			m := regexp.MustCompile(`Overall exposure level for rustygate\.service: (\d+\.\d+)`).FindSubmatch(out)
			if m == nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			score, _ := strconv.ParseFloat(string(m[1]), 64)
			t.Logf("systemd-analyze security: exposure %.1f", score)
			if score > tc.maxScore {
				t.Errorf("exposure %.1f, want at most %.1f (docs/deployment.md gives the figure):\n%s", score, tc.maxScore, out)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// GitHub Actions workflow

type workflow struct {
	On   any `yaml:"on"`
	Jobs map[string]struct {
		RunsOn any               `yaml:"runs-on"`
		Needs  any               `yaml:"needs"`
		If     string            `yaml:"if"`
		Steps  []map[string]any  `yaml:"steps"`
		Env    map[string]string `yaml:"env"`
	} `yaml:"jobs"`
}

func (w workflow) runs(job string) string {
	var b strings.Builder
	for _, s := range w.Jobs[job].Steps {
		if r, ok := s["run"].(string); ok {
			b.WriteString(r)
			b.WriteString("\n")
		}
	}
	return b.String()
}

func (w workflow) uses(job string) []string {
	var out []string
	for _, s := range w.Jobs[job].Steps {
		if u, ok := s["uses"].(string); ok {
			out = append(out, u)
		}
	}
	return out
}

func TestCIWorkflow(t *testing.T) {
	var w workflow
	if err := yaml.Unmarshal([]byte(pkgRead(t, ".github/workflows/ci.yml")), &w); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"linux", "macos", "windows", "lint", "release"} {
		if _, ok := w.Jobs[job]; !ok {
			t.Errorf("no %s job", job)
			continue
		}
		if !slices.ContainsFunc(w.uses(job), func(u string) bool { return strings.HasPrefix(u, "actions/checkout@") }) {
			t.Errorf("job %s does not check out the code", job)
		}
		if !slices.ContainsFunc(w.uses(job), func(u string) bool { return strings.HasPrefix(u, "actions/setup-go@") }) {
			t.Errorf("job %s does not set up Go", job)
		}
	}
	runsOn := map[string]string{"linux": "ubuntu", "macos": "macos", "windows": "windows", "release": "ubuntu", "lint": "ubuntu"}
	for job, runner := range runsOn {
		if ro := fmt.Sprint(w.Jobs[job].RunsOn); !strings.HasPrefix(ro, runner) {
			t.Errorf("job %s runs on %s, want %s-*", job, ro, runner)
		}
	}

	// linux runs what .ci/run runs: make generate (with the diff check)
	// and make test, as root, with the BPF tests required.
	ciRun := pkgRead(t, ".ci/run")
	linux := w.runs("linux")
	for _, target := range []string{"make generate", "make test"} {
		if strings.Contains(ciRun, target) && !strings.Contains(linux, target) && !strings.Contains(linux, ".ci/run") {
			t.Errorf("linux job does not run %q (.ci/run does)", target)
		}
	}
	if !strings.Contains(linux, "sudo") {
		t.Error("linux job does not run the tests as root (sudo)")
	}
	if !strings.Contains(linux, "RUSTYGATE_REQUIRE_BPF=1") && w.Jobs["linux"].Env["RUSTYGATE_REQUIRE_BPF"] != "1" {
		t.Error("linux job does not set RUSTYGATE_REQUIRE_BPF=1")
	}
	if mac := w.runs("macos"); !strings.Contains(mac, "go test") || !strings.Contains(mac, "go build") || !strings.Contains(mac, "go vet") {
		t.Errorf("macos job should build, vet and run the portable unit tests:\n%s", mac)
	}
	if win := w.runs("windows"); !strings.Contains(win, "go build ./...") || !strings.Contains(win, "go vet") {
		t.Errorf("windows job should go build ./... and go vet:\n%s", win)
	}
	if lint := w.runs("lint"); !strings.Contains(lint, "make lint") && !(strings.Contains(lint, "gofmt") && strings.Contains(lint, "go vet")) {
		t.Errorf("lint job should run make lint (gofmt + go vet):\n%s", lint)
	}

	rel := w.Jobs["release"]
	if !strings.Contains(w.runs("release"), "make release") {
		t.Error("release job does not run make release")
	}
	if !strings.Contains(rel.If, "refs/tags/") {
		t.Errorf("release job runs on %q, want only on tags", rel.If)
	}
	needs := fmt.Sprint(rel.Needs)
	for _, job := range []string{"linux", "lint"} {
		if !strings.Contains(needs, job) {
			t.Errorf("release job does not need %s (needs: %s)", job, needs)
		}
	}
	uploads := strings.Contains(w.runs("release"), "gh release") ||
		slices.ContainsFunc(w.uses("release"), func(u string) bool { return strings.HasPrefix(u, "softprops/action-gh-release@") })
	if !uploads {
		t.Error("release job uploads nothing (softprops/action-gh-release or gh release)")
	}
	if !strings.Contains(pkgRead(t, ".github/workflows/ci.yml"), "dist/") {
		t.Error("release job does not upload dist/")
	}
}

// ---------------------------------------------------------------------------
// docs/configuration.md

// schemaKey is one configuration key: its path (server.listen,
// routes[].timeouts.connect), the top-level section and the reflect path
// to its value (in config.Config, or for a key of a middleware kind's
// settings, in the settings of the kind's global entries).
type schemaKey struct {
	path, section string
	index         [][]int // struct field indexes, one list per slice level
	kind          string  // the middleware kind whose settings hold the key
}

// schemaKeys lists every key of config.Config, following structs,
// pointers and slices of structs (each type once: the route entries of
// middlewares are the same keys as the global ones), then the keys of
// each registered middleware kind's settings, as keys of
// middlewares[] (a key two kinds share is listed once, for the first;
// the keys under it are each kind's).
func schemaKeys() []schemaKey {
	var out []schemaKey
	seen := map[reflect.Type]bool{}
	paths := map[string]bool{}
	kind := ""
	var walk func(t reflect.Type, prefix, section string, index [][]int)
	walk = func(t reflect.Type, prefix, section string, index [][]int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			path := tag
			if prefix != "" {
				path = prefix + "." + tag
			}
			sec := section
			if sec == "" {
				sec = tag
			}
			idx := slices.Clone(index)
			idx[len(idx)-1] = append(slices.Clone(idx[len(idx)-1]), i)
			// A key another kind has is listed once, but what it holds
			// may differ: its keys are walked.
			if kind == "" || !paths[path] {
				paths[path] = true
				out = append(out, schemaKey{path: path, section: sec, index: idx, kind: kind})
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[config.Duration]():
				walk(ft, path, sec, idx)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				if !seen[ft.Elem()] {
					seen[ft.Elem()] = true
					walk(ft.Elem(), path+"[]", sec, append(idx, []int{}))
				}
			}
		}
	}
	walk(reflect.TypeFor[config.Config](), "", "", [][]int{{}})
	for _, name := range config.MiddlewareKindNames() {
		mk, _ := config.LookupMiddlewareKind(name)
		kind = name
		walk(reflect.TypeOf(mk.New()).Elem(), "middlewares[]", "middlewares", [][]int{{}})
	}
	return out
}

// values returns the values of key k in c: one per element of each list
// on the way.
func (k schemaKey) values(c *config.Config) []reflect.Value {
	vals := []reflect.Value{reflect.ValueOf(c).Elem()}
	if k.kind != "" {
		vals = nil
		for _, m := range c.Middlewares {
			if m.Name == k.kind {
				vals = append(vals, reflect.ValueOf(m.Settings).Elem())
			}
		}
	}
	for level, idx := range k.index {
		if level > 0 {
			var next []reflect.Value
			for _, v := range vals {
				for i := 0; i < v.Len(); i++ {
					next = append(next, v.Index(i))
				}
			}
			vals = next
		}
		for _, fi := range idx {
			var next []reflect.Value
			for _, v := range vals {
				for v.Kind() == reflect.Pointer {
					if v.IsNil() {
						v = reflect.Value{}
						break
					}
					v = v.Elem()
				}
				if v.IsValid() {
					next = append(next, v.Field(fi))
				}
			}
			vals = next
		}
	}
	return vals
}

// docTables returns the rows of the Markdown tables of doc: the key in
// the first column (between backticks) and the whole row.
func docTables(doc string) map[string]string {
	rows := map[string]string{}
	re := regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|")
	for _, l := range strings.Split(doc, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			rows[m[1]] = l
		}
	}
	return rows
}

// defaultRenderings are the ways the documentation may write a default.
func defaultRenderings(v reflect.Value) []string {
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Type() == reflect.TypeFor[config.Duration]() {
		d := time.Duration(v.Int())
		out := []string{d.String(), strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")}
		if d%time.Second == 0 {
			out = append(out, fmt.Sprintf("%ds", d/time.Second))
		}
		if d%time.Minute == 0 {
			out = append(out, fmt.Sprintf("%dm", d/time.Minute))
		}
		if d%time.Hour == 0 {
			out = append(out, fmt.Sprintf("%dh", d/time.Hour))
		}
		return out
	}
	switch v.Kind() {
	case reflect.Float64:
		return []string{strconv.FormatFloat(v.Float(), 'f', -1, 64), strconv.FormatFloat(v.Float(), 'f', 1, 64)}
	case reflect.Slice:
		var parts []string
		for i := 0; i < v.Len(); i++ {
			parts = append(parts, fmt.Sprint(v.Index(i).Interface()))
		}
		return []string{strings.Join(parts, ", "), "[" + strings.Join(parts, ", ") + "]"}
	}
	return []string{fmt.Sprint(v.Interface())}
}

// docDefaultsConfig has one of everything, so that every default is
// filled; explicitDefaults are the keys it sets itself (not defaults).
const docDefaultsConfig = `
routes:
  - path: /api
    backend: "http://127.0.0.1:8001"
    health_check: { path: /health }
    max_conns: 10
middlewares:
  - { name: cors, allow_origins: ["https://app.example.com"] }
  - { name: rate_limit, limit: 100 }
  - { name: jwt, secret: "0123456789abcdef0123456789abcdef" }
  - { name: wasm, path: /etc/rustygate/plugins/p.wasm }
l4:
  - name: pg
    listen: ":5433"
    backends: [ { addr: "127.0.0.1:5432" } ]
    health_check: { interval: 5s }
`

var explicitDefaults = []string{
	// Derived from other keys rather than defaulted: the name from the
	// path, the pool from backend, a rate limit's burst from its limit.
	"routes[].name", "middlewares[].burst",
	"routes[].path", "routes[].backend", "routes[].health_check.path", "routes[].max_conns",
	"routes[].backends[].url",
	"middlewares[].name", "middlewares[].allow_origins", "middlewares[].limit", "middlewares[].secret", "middlewares[].path",
	"l4[].name", "l4[].listen", "l4[].backends[].addr", "l4[].health_check.interval",
}

func TestConfigurationDoc(t *testing.T) {
	doc := pkgRead(t, "docs/configuration.md")
	rows := docTables(doc)
	keys := schemaKeys()
	if len(keys) < 100 {
		t.Fatalf("found only %d keys in config.Config", len(keys))
	}

	// Every key has a row in a table, under the section of its top-level
	// key.
	sections := map[string]string{}
	var cur string
	for _, l := range strings.Split(doc, "\n") {
		if m := regexp.MustCompile("^##\\s+`([a-z0-9_]+)`").FindStringSubmatch(l); m != nil {
			cur = m[1]
		} else if strings.HasPrefix(l, "## ") {
			cur = ""
		}
		if m := regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|").FindStringSubmatch(l); m != nil {
			sections[m[1]] = cur
		}
	}
	for _, k := range keys {
		row, ok := rows[k.path]
		if !ok {
			t.Errorf("docs/configuration.md has no table row for `%s`", k.path)
			continue
		}
		if sections[k.path] != k.section {
			t.Errorf("`%s` is documented under the section %q, want %q", k.path, sections[k.path], k.section)
		}
		if strings.Count(row, "|") < 4 {
			t.Errorf("row of `%s` lacks a default or a description: %s", k.path, row)
		}
	}
	// Every yaml tag of the package's types, and of the middlewares'
	// packages, appears (covers keys of types not reachable from Config
	// or from a registered kind, should one be added).
	files := mustGlob(t, filepath.Join(repoRoot, "config", "*.go"))
	files = append(files, mustGlob(t, filepath.Join(repoRoot, "l7", "middleware", "*", "*.go"))...)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`yaml:"([a-z0-9_]+)`).FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(doc, "`"+m[1]+"`") && !regexp.MustCompile("`[^`]*[.\\]]"+m[1]+"`").MatchString(doc) {
				t.Errorf("yaml key %q (%s) is not in docs/configuration.md", m[1], filepath.Base(f))
			}
		}
	}
	// Stale rows: a documented key the schema does not have.
	known := map[string]bool{}
	for _, k := range keys {
		known[k.path] = true
	}
	for path, row := range rows {
		if strings.ContainsAny(path, ".[") && !known[path] && regexp.MustCompile(`^[a-z0-9_]+(\[\])?\.`).MatchString(path) {
			t.Errorf("docs/configuration.md documents `%s`, which neither config.Config nor a middleware kind has: %s", path, row)
		}
	}

	// The defaults in the tables are the ones the code fills in. The
	// plugin file must exist.
	t.Chdir(t.TempDir())
	if err := os.MkdirAll("etc/rustygate/plugins", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("etc/rustygate/plugins/p.wasm", []byte("\x00asm\x01\x00\x00\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("defaults.yaml", []byte(strings.Replace(docDefaultsConfig, "/etc/rustygate/plugins/p.wasm", "etc/rustygate/plugins/p.wasm", 1)))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, k := range keys {
		row, ok := rows[k.path]
		if !ok || slices.Contains(explicitDefaults, k.path) {
			continue
		}
		cells := strings.Split(row, "|")
		if len(cells) < 4 {
			continue
		}
		cell := normalDefault(cells[2])
		for _, v := range k.values(cfg) {
			if v.Kind() == reflect.Struct && v.Type() != reflect.TypeFor[config.Duration]() {
				break
			}
			if v.IsZero() || (v.Kind() == reflect.Slice && v.Len() == 0) {
				continue
			}
			if v.Kind() == reflect.Map || (v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct) {
				break
			}
			ok := false
			for _, r := range defaultRenderings(v) {
				if strings.Contains(cell, normalDefault(r)) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("`%s`: default is %v (%s), the table says %q", k.path, v.Interface(), strings.Join(defaultRenderings(v), " or "), strings.TrimSpace(cells[2]))
			}
			checked++
			break
		}
	}
	if checked < 40 {
		t.Errorf("compared only %d defaults with the code", checked)
	}
}

// normalDefault strips the punctuation a default may be written with
// (backticks, quotes, brackets, commas), so that ["2xx", "3xx"], `2xx`,
// `3xx` and 2xx, 3xx compare equal, as do 65,536 and 65536.
func normalDefault(s string) string {
	s = regexp.MustCompile(`(\d),(\d{3})\b`).ReplaceAllString(s, "$1$2")
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune("`\"'[],", r) {
			return ' '
		}
		return r
	}, s)
	return " " + strings.Join(strings.Fields(s), " ") + " "
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v", pattern, err)
	}
	return m
}

// TestDocsLinks checks that the relative links between the documents
// point at files that exist (plugins/README.md may not exist yet: it is
// being written).
func TestDocsLinks(t *testing.T) {
	re := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, f := range append(mustGlob(t, filepath.Join(repoRoot, "docs", "*.md")), filepath.Join(repoRoot, "vagrant", "README.md")) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			target := filepath.Join(filepath.Dir(f), link)
			if _, err := os.Stat(target); err != nil {
				if strings.HasSuffix(link, "plugins/README.md") || strings.HasSuffix(link, "kernels.md") {
					continue
				}
				t.Errorf("%s links to %s, which does not exist", f, link)
			}
		}
	}
}

// TestConfigurationDocExample checks that the complete example at the top
// of docs/configuration.md is a configuration the gateway accepts.
func TestConfigurationDocExample(t *testing.T) {
	doc := pkgRead(t, "docs/configuration.md")
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("docs/configuration.md has no YAML example")
	}
	t.Setenv("RUSTYGATE_ADMIN_TOKEN", "example-token")
	cfg, err := config.Parse("configuration.md", []byte(m[1]))
	if err != nil {
		t.Fatalf("the example in docs/configuration.md does not parse:\n%v", err)
	}
	if len(cfg.Routes) == 0 || len(cfg.Middlewares) == 0 || len(cfg.L4) == 0 || !cfg.Tracing.Enabled {
		t.Error("the example should show routes, middlewares, l4 and tracing")
	}
}
