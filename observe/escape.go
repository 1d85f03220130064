package observe

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// byteString is a string or a byte slice: the appenders take request
// fields in whichever form they arrive, without converting.
type byteString interface{ ~string | ~[]byte }

const lowerHex = "0123456789abcdef"

// jsonSafe[b] is true for the ASCII bytes that appear unescaped inside a
// JSON string (encoding/json's set, without HTML escaping).
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// decodeRune decodes the rune starting at s[i] (s[i] >= utf8.RuneSelf).
// It copies at most utf8.UTFMax bytes so that neither form of s is
// converted.
func decodeRune[S byteString](s S, i int) (rune, int) {
	var b [utf8.UTFMax]byte
	n := copy(b[:], s[i:min(len(s), i+utf8.UTFMax)])
	return utf8.DecodeRune(b[:n])
}

// appendJSONString appends s as a quoted JSON string, byte for byte as
// encoding/json writes it with HTML escaping off: '"' and '\\' escaped,
// control characters as \b \f \n \r \t or \u00XX, U+2028 and U+2029
// escaped, each invalid UTF-8 byte replaced by \ufffd.
func appendJSONString[S byteString](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	i := jsonSafePrefix(s)
	if i == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	for i < len(s) {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[b>>4], lowerHex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := decodeRune(s, i)
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonSafePrefix returns the length of the longest prefix of s, in whole
// 8-byte words, made of bytes that appear unescaped in a JSON string:
// access log fields are mostly such bytes, and are checked a word at a
// time instead of a byte at a time.
func jsonSafePrefix[S byteString](s S) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// A byte >= 0x80, < 0x20, '"' or '\\' sets its high bit here.
		q, bs := x^(ones*'"'), x^(ones*'\\')
		if (x|(x-ones*0x20)&^x|(q-ones)&^q|(bs-ones)&^bs)&highs != 0 {
			break
		}
	}
	return i
}

// appendTextValue appends s as slog's TextHandler writes a string value:
// bare when it is non-empty and holds no space, '=', quote, control,
// non-printing or invalid character; otherwise quoted as strconv.Quote
// does.
func appendTextValue[S byteString](dst []byte, s S) []byte {
	if textNeedsQuoting(s) {
		return appendQuoted(dst, s)
	}
	return append(dst, s...)
}

// textNeedsQuoting mirrors log/slog's rule for TextHandler values.
func textNeedsQuoting[S byteString](s S) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b != '\\' && (b == ' ' || b == '=' || !jsonSafe[b]) {
				return true
			}
			i++
			continue
		}
		r, size := decodeRune(s, i)
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

// appendQuoted appends s as a double-quoted Go string literal, exactly as
// strconv.Quote formats it.
func appendQuoted[S byteString](dst []byte, s S) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		r, width := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, width = decodeRune(s, i)
		}
		if width == 1 && r == utf8.RuneError {
			dst = append(dst, '\\', 'x', lowerHex[s[i]>>4], lowerHex[s[i]&0xF])
			i++
			continue
		}
		i += width
		if r == '"' || r == '\\' {
			dst = append(dst, '\\', byte(r))
			continue
		}
		if strconv.IsPrint(r) {
			dst = utf8.AppendRune(dst, r)
			continue
		}
		switch r {
		case '\a':
			dst = append(dst, '\\', 'a')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\v':
			dst = append(dst, '\\', 'v')
		default:
			switch {
			case r < ' ' || r == 0x7f:
				dst = append(dst, '\\', 'x', lowerHex[byte(r)>>4], lowerHex[byte(r)&0xF])
			case r < 0x10000:
				dst = append(dst, '\\', 'u')
				for shift := 12; shift >= 0; shift -= 4 {
					dst = append(dst, lowerHex[r>>uint(shift)&0xF])
				}
			default:
				dst = append(dst, '\\', 'U')
				for shift := 28; shift >= 0; shift -= 4 {
					dst = append(dst, lowerHex[r>>uint(shift)&0xF])
				}
			}
		}
	}
	return append(dst, '"')
}
