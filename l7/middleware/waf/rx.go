package waf

import (
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
	"github.com/corazawaf/coraza/v3/experimental/plugins/plugintypes"
	re2 "github.com/wasilibs/go-re2"
	"github.com/wasilibs/go-re2/experimental"
)

// The CRS's cost is its @rx rules (about 150 at paranoia level 1, each
// run on every argument, header and cookie). Coraza runs them with Go's
// regexp, which has no DFA; RE2 (go-re2, the C++ library compiled to Go,
// no cgo) matches the same syntax with a DFA, several times faster on
// these patterns. The operator keeps Coraza's semantics: patterns get
// the (?sm) flags, captures fill TX.0-TX.9 when the rule captures, and a
// pattern that matches bytes that are not UTF-8 (\xNN over 0x7f) runs in
// Latin-1 mode, as Coraza's binary matcher does.
func init() {
	plugins.RegisterOperator("rx", newRE2Operator)
}

// rxOperator is an @rx operator on RE2.
type rxOperator struct {
	re *re2.Regexp
}

var (
	rxCacheMu sync.Mutex
	rxCache   = map[string]*re2.Regexp{}
)

// compileRX compiles a pattern once per process: the CRS repeats
// patterns, and every WAF built (one per distinct settings) shares them.
func compileRX(pattern string, latin1 bool) (*re2.Regexp, error) {
	key := strconv.FormatBool(latin1) + pattern
	rxCacheMu.Lock()
	defer rxCacheMu.Unlock()
	if re, ok := rxCache[key]; ok {
		return re, nil
	}
	var re *re2.Regexp
	var err error
	if latin1 {
		re, err = experimental.CompileLatin1(pattern)
	} else {
		re, err = re2.Compile(pattern)
	}
	if err != nil {
		return nil, err
	}
	rxCache[key] = re
	return re, nil
}

func newRE2Operator(options plugintypes.OperatorOptions) (plugintypes.Operator, error) {
	if matchesNonUTF8(options.Arguments) {
		re, err := compileRX(options.Arguments, true)
		if err != nil {
			return nil, err
		}
		return &rxOperator{re: re}, nil
	}
	re, err := compileRX("(?sm)"+options.Arguments, false)
	if err != nil {
		return nil, err
	}
	return &rxOperator{re: re}, nil
}

func (o *rxOperator) Evaluate(tx plugintypes.TransactionState, value string) bool {
	// Most values do not match: the DFA answers that without the cost of
	// tracking submatches, which only a match that captures needs.
	if !o.re.MatchString(value) {
		return false
	}
	if !tx.Capturing() {
		return true
	}
	m := o.re.FindStringSubmatchIndex(value)
	if m == nil {
		return false
	}
	for i := 0; i < len(m)/2 && i < 9; i++ {
		if m[2*i] >= 0 {
			tx.CaptureField(i, value[m[2*i]:m[2*i+1]])
		} else {
			tx.CaptureField(i, "")
		}
	}
	return true
}

// matchesNonUTF8 reports whether a pattern has hex escapes that decode
// to bytes that are not valid UTF-8 (as Coraza decides when to match
// bytes rather than characters).
func matchesNonUTF8(expr string) bool {
	var decoded []byte
	for i := 0; i < len(expr); i++ {
		if expr[i] != '\\' || i+3 >= len(expr) || expr[i+1] != 'x' {
			decoded = append(decoded, expr[i])
			continue
		}
		hex, skip := expr[i+2:i+4], 3
		if expr[i+2] == '{' {
			end := strings.IndexByte(expr[i:], '}')
			if end < 0 {
				decoded = append(decoded, expr[i])
				continue
			}
			hex, skip = expr[i+3:i+end], end
		}
		v, err := strconv.ParseUint(hex, 16, 8)
		if err != nil {
			decoded = append(decoded, expr[i])
			continue
		}
		decoded = append(decoded, byte(v))
		i += skip
	}
	return !utf8.Valid(decoded)
}
