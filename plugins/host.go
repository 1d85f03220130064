package plugins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// hostModule is the import module name of the http-wasm HTTP handler ABI.
const hostModule = "http_handler"

// maxLogMessage bounds a guest log message.
const maxLogMessage = 4096

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// hostFunc is one function of the "http_handler" module.
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(st *callState, mem api.Memory, stack []uint64)
}

// hostFuncs implement the http-wasm HTTP handler ABI. Per the ABI, a host
// that cannot do what is asked traps: the functions panic, wazero turns
// that into an error of the guest call, and the instance is discarded.
var hostFuncs = []hostFunc{
	{"log", []api.ValueType{i32, i32, i32}, nil, hostLog},
	{"log_enabled", []api.ValueType{i32}, []api.ValueType{i32}, hostLogEnabled},
	{"get_config", []api.ValueType{i32, i32}, []api.ValueType{i32}, hostGetConfig},
	{"enable_features", []api.ValueType{i32}, []api.ValueType{i32}, hostEnableFeatures},
	{"get_method", []api.ValueType{i32, i32}, []api.ValueType{i32}, hostGetMethod},
	{"set_method", []api.ValueType{i32, i32}, nil, hostSetMethod},
	{"get_uri", []api.ValueType{i32, i32}, []api.ValueType{i32}, hostGetURI},
	{"set_uri", []api.ValueType{i32, i32}, nil, hostSetURI},
	{"get_protocol_version", []api.ValueType{i32, i32}, []api.ValueType{i32}, hostGetProtocolVersion},
	{"get_source_addr", []api.ValueType{i32, i32}, []api.ValueType{i32}, hostGetSourceAddr},
	{"add_header_value", []api.ValueType{i32, i32, i32, i32, i32}, nil, hostAddHeaderValue},
	{"set_header_value", []api.ValueType{i32, i32, i32, i32, i32}, nil, hostSetHeaderValue},
	{"remove_header", []api.ValueType{i32, i32, i32}, nil, hostRemoveHeader},
	{"get_header_names", []api.ValueType{i32, i32, i32}, []api.ValueType{i64}, hostGetHeaderNames},
	{"get_header_values", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i64}, hostGetHeaderValues},
	{"read_body", []api.ValueType{i32, i32, i32}, []api.ValueType{i64}, hostReadBody},
	{"write_body", []api.ValueType{i32, i32, i32}, nil, hostWriteBody},
	{"get_status_code", nil, []api.ValueType{i32}, hostGetStatusCode},
	{"set_status_code", []api.ValueType{i32}, nil, hostSetStatusCode},
}

// instantiateHost defines the "http_handler" module in rt, and the
// "rustygate" module of the guests' deadline checks (see instrument).
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(hostModule)
	for _, f := range hostFuncs {
		fn := f.fn
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				st := stateOf(ctx)
				st.mu.Lock()
				defer st.mu.Unlock()
				if st.gone {
					trap("call abandoned at its deadline")
				}
				fn(st, mod.Memory(), stack)
			}), f.params, f.results).
			Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return err
	}
	_, err := rt.NewHostModuleBuilder(tickModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, _ []uint64) {
			if mod.IsClosed() {
				panic(errGuestClosed) // the runtime is closing
			}
			if c, ok := ctx.Value(callCtxKey{}).(*callCtx); ok {
				c.tick()
			}
		}), nil, nil).
		Export(tickName).
		Instantiate(ctx)
	return err
}

// instantiateWASI defines the "wasi_snapshot_preview1" module in rt. Go
// (GOOS=wasip1), TinyGo and other WASI guests import a few of its
// functions (clock, random, fd_write for panics, proc_exit); none gives
// file or network access, as no directory or socket is configured.
//
// proc_exit ends the guest call with its exit code without closing the
// instance (wazero's closes it): a WASI command's main may end with
// proc_exit(0), which is a successful start, after which the instance
// serves requests (see runStart). Any other exit fails the call, and the
// host discards the instance.
func instantiateWASI(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			panic(sys.NewExitError(uint32(stack[0])))
		}), []api.ValueType{i32}, nil).
		WithParameterNames("rval").
		Export("proc_exit")
	_, err := b.Instantiate(ctx)
	return err
}

// trapError is the panic value of a host function refusing a call.
type trapError struct{ msg string }

func (e *trapError) Error() string { return "http_handler: " + e.msg }

func trap(format string, args ...any) {
	panic(&trapError{fmt.Sprintf(format, args...)})
}

func stateOf(ctx context.Context) *callState {
	st, _ := ctx.Value(stateKey{}).(*callState)
	if st == nil {
		trap("called outside of a RustyGate call")
	}
	return st
}

// needEx returns the exchange, trapping when the instance is initialising.
func (st *callState) needEx(fn string) Exchange {
	if st.ex == nil {
		trap("%s called outside of handle_request/handle_response", fn)
	}
	return st.ex
}

func read(mem api.Memory, off, n uint32) []byte {
	if mem == nil {
		trap("guest exports no memory")
	}
	b, ok := mem.Read(off, n)
	if !ok {
		trap("memory range [%d, %d+%d) out of bounds", off, off, n)
	}
	return b
}

// writeIfFits implements the buf/buf_limit convention: the value is written
// only when it fits, and its length is returned either way.
func writeIfFits(mem api.Memory, buf, limit uint32, v []byte) uint32 {
	n := uint32(len(v))
	if n > 0 && n <= limit {
		if mem == nil || !mem.Write(buf, v) {
			trap("memory range [%d, %d+%d) out of bounds", buf, buf, n)
		}
	}
	return n
}

func writeStringIfFits(mem api.Memory, buf, limit uint32, v string) uint32 {
	n := uint32(len(v))
	if n > 0 && n <= limit {
		if mem == nil || !mem.WriteString(buf, v) {
			trap("memory range [%d, %d+%d) out of bounds", buf, buf, n)
		}
	}
	return n
}

func hostLog(st *callState, mem api.Memory, stack []uint64) {
	level := int32(stack[0])
	lvl, ok := slogLevel(level)
	if !ok || !st.mod.log.Enabled(context.Background(), lvl) {
		return
	}
	msg := read(mem, uint32(stack[1]), min(uint32(stack[2]), maxLogMessage))
	st.mod.log.Log(context.Background(), lvl, "wasm plugin: "+string(msg),
		"plugin", st.mod.path, "route", st.mod.route)
}

func hostLogEnabled(st *callState, _ api.Memory, stack []uint64) {
	lvl, ok := slogLevel(int32(stack[0]))
	stack[0] = 0
	if ok && st.mod.log.Enabled(context.Background(), lvl) {
		stack[0] = 1
	}
}

func slogLevel(level int32) (slog.Level, bool) {
	switch {
	case level <= logLevelDebug:
		return slog.LevelDebug, true
	case level == logLevelInfo:
		return slog.LevelInfo, true
	case level == logLevelWarn:
		return slog.LevelWarn, true
	case level == logLevelError:
		return slog.LevelError, true
	}
	return 0, false // none, or unknown
}

func hostGetConfig(st *callState, mem api.Memory, stack []uint64) {
	stack[0] = uint64(writeIfFits(mem, uint32(stack[0]), uint32(stack[1]), st.mod.config))
}

func hostEnableFeatures(st *callState, _ api.Memory, stack []uint64) {
	f := Features(uint32(stack[0])) & supportedFeatures
	if st.phase == phaseInit {
		st.initFeatures |= f
	}
	st.features |= f
	stack[0] = uint64(st.features)
}

func hostGetMethod(st *callState, mem api.Memory, stack []uint64) {
	m := st.needEx("get_method").Method()
	stack[0] = uint64(writeIfFits(mem, uint32(stack[0]), uint32(stack[1]), m))
}

func hostSetMethod(st *callState, mem api.Memory, stack []uint64) {
	ex := st.needEx("set_method")
	m := read(mem, uint32(stack[0]), uint32(stack[1]))
	if !validToken(m) {
		trap("set_method: invalid method %q", m)
	}
	if st.phase == phaseRequest {
		ex.SetMethod(st.intern(m))
	}
}

func hostGetURI(st *callState, mem api.Memory, stack []uint64) {
	u := st.needEx("get_uri").URI()
	if len(u) == 0 {
		stack[0] = uint64(writeStringIfFits(mem, uint32(stack[0]), uint32(stack[1]), "/"))
		return
	}
	stack[0] = uint64(writeIfFits(mem, uint32(stack[0]), uint32(stack[1]), u))
}

func hostSetURI(st *callState, mem api.Memory, stack []uint64) {
	ex := st.needEx("set_uri")
	u := read(mem, uint32(stack[0]), uint32(stack[1]))
	if !validURI(u) {
		trap("set_uri: invalid URI %q", u)
	}
	if st.phase == phaseRequest {
		ex.SetURI(string(u))
	}
}

func hostGetProtocolVersion(st *callState, mem api.Memory, stack []uint64) {
	p := st.needEx("get_protocol_version").Proto()
	stack[0] = uint64(writeStringIfFits(mem, uint32(stack[0]), uint32(stack[1]), p))
}

func hostGetSourceAddr(st *callState, mem api.Memory, stack []uint64) {
	ap := st.needEx("get_source_addr").PeerAddr()
	if !ap.IsValid() {
		ap = netip.AddrPortFrom(st.ex.PeerIP(), 0)
	}
	st.scratch = ap.AppendTo(st.scratch[:0])
	stack[0] = uint64(writeIfFits(mem, uint32(stack[0]), uint32(stack[1]), st.scratch))
}

// headerArgs reads and checks a header name (and value) from guest memory.
func headerArgs(mem api.Memory, stack []uint64, withValue bool) (name, value []byte) {
	name = read(mem, uint32(stack[1]), uint32(stack[2]))
	if !validToken(name) {
		trap("invalid header name %q", name)
	}
	if withValue {
		value = read(mem, uint32(stack[3]), uint32(stack[4]))
		if !validFieldValue(value) {
			trap("invalid value for header %q", name)
		}
	}
	return name, value
}

func hostAddHeaderValue(st *callState, mem api.Memory, stack []uint64) {
	setHeader(st, mem, stack, true)
}

func hostSetHeaderValue(st *callState, mem api.Memory, stack []uint64) {
	setHeader(st, mem, stack, false)
}

func setHeader(st *callState, mem api.Memory, stack []uint64, add bool) {
	fn := "set_header_value"
	if add {
		fn = "add_header_value"
	}
	ex := st.needEx(fn)
	kind := uint32(stack[0])
	nb, vb := headerArgs(mem, stack, true)
	name, value := st.intern(nb), st.intern(vb)
	switch kind {
	case headerKindRequest:
		if st.phase != phaseRequest {
			return // the request is gone: nothing to change
		}
		if add {
			ex.AddHeader(name, value)
		} else {
			ex.SetHeader(name, value)
		}
	case headerKindResponse:
		if st.phase == phaseRequest {
			st.pendingSet(name, value, add)
		} else if add {
			ex.AddResponseHeader(name, value)
		} else {
			ex.SetResponseHeader(name, value)
		}
	default:
		trap("%s: unsupported header kind %d (trailers are not supported)", fn, kind)
	}
}

func hostRemoveHeader(st *callState, mem api.Memory, stack []uint64) {
	ex := st.needEx("remove_header")
	kind := uint32(stack[0])
	nb, _ := headerArgs(mem, stack, false)
	name := st.intern(nb)
	switch kind {
	case headerKindRequest:
		if st.phase == phaseRequest {
			ex.DelHeader(name)
		}
	case headerKindResponse:
		if st.phase == phaseRequest {
			st.pendingDel(name)
		} else {
			ex.DelResponseHeader(name)
		}
	default:
		trap("remove_header: unsupported header kind %d (trailers are not supported)", kind)
	}
}

func hostGetHeaderNames(st *callState, mem api.Memory, stack []uint64) {
	ex := st.needEx("get_header_names")
	kind := uint32(stack[0])
	buf, limit := uint32(stack[1]), uint32(stack[2])
	names := st.names[:0]
	switch kind {
	case headerKindRequest:
		names = ex.RequestHeaderNames(names)
	case headerKindResponse:
		if st.phase == phaseRequest {
			for _, h := range st.respHeaders {
				names = append(names, h[0])
			}
		} else {
			names = ex.ResponseHeaderNames(names)
		}
	case headerKindRequestTrailers, headerKindResponseTrailers:
		// Trailers are not supported: always empty.
	default:
		trap("get_header_names: unknown header kind %d", kind)
	}
	st.names = names
	// Lowercase, NUL-terminated, each name once.
	out := st.scratch[:0]
	count := 0
	for i, n := range names {
		dup := false
		for _, prev := range names[:i] {
			if strings.EqualFold(prev, n) {
				dup = true
				break
			}
		}
		if dup || n == "" {
			continue
		}
		for j := 0; j < len(n); j++ {
			c := n[j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
		}
		out = append(out, 0)
		count++
	}
	st.scratch = out
	stack[0] = uint64(count)<<32 | uint64(writeIfFits(mem, buf, limit, out))
}

func hostGetHeaderValues(st *callState, mem api.Memory, stack []uint64) {
	ex := st.needEx("get_header_values")
	kind := uint32(stack[0])
	name := read(mem, uint32(stack[1]), uint32(stack[2]))
	buf, limit := uint32(stack[3]), uint32(stack[4])
	out := st.scratch[:0]
	count := 0
	switch kind {
	case headerKindRequest, headerKindResponse:
		if kind == headerKindResponse && st.phase == phaseRequest {
			for _, h := range st.respHeaders {
				if equalFoldBytes(h[0], name) {
					out = append(append(out, h[1]...), 0)
					count++
				}
			}
			break
		}
		values := st.values[:0]
		if kind == headerKindRequest {
			values = ex.RequestHeaderValues(st.intern(name), values)
		} else {
			values = ex.ResponseHeaderValues(st.intern(name), values)
		}
		for _, v := range values {
			out = append(append(out, v...), 0)
		}
		count = len(values)
		clear(values)
		st.values = values[:0]
	case headerKindRequestTrailers, headerKindResponseTrailers:
	default:
		trap("get_header_values: unknown header kind %d", kind)
	}
	st.scratch = out
	stack[0] = uint64(count)<<32 | uint64(writeIfFits(mem, buf, limit, out))
}

func hostReadBody(st *callState, mem api.Memory, stack []uint64) {
	ex := st.needEx("read_body")
	kind := uint32(stack[0])
	buf, limit := uint32(stack[1]), uint32(stack[2])
	if limit == 0 {
		trap("read_body: buf_limit is zero")
	}
	var body []byte
	var off *int
	switch kind {
	case bodyKindRequest:
		if !st.reqBodyLoaded {
			st.reqBodyLoaded = true
			if st.phase == phaseRequest {
				offload(ex) // the body may still be on its way
				b, err := ex.RequestBody()
				if err != nil {
					trap("read_body: request body: %v", err)
				}
				st.reqBodyIn = b
			}
		}
		body, off = st.reqBodyIn, &st.reqBodyRead
	case bodyKindResponse:
		if !st.respBodyLoaded {
			st.respBodyLoaded = true
			if st.phase == phaseResponse {
				st.respBodyIn = ex.ResponseBody()
			}
		}
		body, off = st.respBodyIn, &st.respBodyRead
	default:
		trap("read_body: unknown body kind %d", kind)
	}
	rest := body[*off:]
	n := min(uint32(len(rest)), limit)
	if n > 0 && !mem.Write(buf, rest[:n]) {
		trap("memory range [%d, %d+%d) out of bounds", buf, buf, n)
	}
	*off += int(n)
	var eof uint64
	if *off == len(body) {
		eof = 1 << 32
	}
	stack[0] = eof | uint64(n)
}

func hostWriteBody(st *callState, mem api.Memory, stack []uint64) {
	st.needEx("write_body")
	kind := uint32(stack[0])
	b := read(mem, uint32(stack[1]), uint32(stack[2]))
	limit := st.mod.opts.MaxBodyBytes
	switch {
	case kind == bodyKindRequest && st.phase == phaseRequest:
		if len(st.reqBodyOut)+len(b) > limit {
			trap("write_body: request body over %d bytes", limit)
		}
		st.reqBodyOut = append(st.reqBodyOut, b...)
		st.reqBodyWritten = true
	case kind == bodyKindRequest:
		// The request is gone: nothing to change.
	case kind == bodyKindResponse:
		if len(st.respBody)+len(b) > limit {
			trap("write_body: response body over %d bytes", limit)
		}
		st.respBody = append(st.respBody, b...)
		st.respBodyWritten = true
	default:
		trap("write_body: unknown body kind %d", kind)
	}
}

func hostGetStatusCode(st *callState, _ api.Memory, stack []uint64) {
	ex := st.needEx("get_status_code")
	if st.phase == phaseResponse {
		stack[0] = uint64(uint32(ex.ResponseStatus()))
		return
	}
	stack[0] = uint64(uint32(st.status))
}

func hostSetStatusCode(st *callState, _ api.Memory, stack []uint64) {
	ex := st.needEx("set_status_code")
	code := int(int32(stack[0]))
	if code < 100 || code > 599 {
		trap("set_status_code: invalid status %d", code)
	}
	if st.phase == phaseResponse {
		ex.SetResponseStatus(code)
		return
	}
	st.status = code
}

// validToken reports whether b is an RFC 9110 token (method, header name).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// validFieldValue rejects the bytes that would let a value split or end a
// header line.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// validURI accepts an origin-form request target: "/" then visible ASCII.
func validURI(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

func equalFoldBytes(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := 0; i < len(s); i++ {
		x, y := s[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

var errNoHandleRequest = errors.New(`guest does not export "handle_request" () -> i64`)
