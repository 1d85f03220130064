package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

var escapeCases = []string{
	"",
	"plain",
	"/api/test?a=1&b=2",
	`say "hi"`,
	`back\slash`,
	"line\nbreak",
	"cr\rlf\r\n",
	"tab\there",
	"bell\a back\b form\f vtab\v",
	"nul\x00 one\x01 us\x1f",
	"del\x7f",
	"<script>&amp;</script>",
	"héllo wörld",
	"世界",
	"emoji 🎉 and 𝄞",
	"line sep \u2028 para sep \u2029",
	"bom \ufeff",
	"replacement char \ufffd itself",
	"invalid \xff byte",
	"\xc3( bad continuation",
	"truncated \xe2\x82",
	"\xe2\x82",
	"overlong \xc0\xaf",
	"surrogate \xed\xa0\x80",
	"a=b c",
	"nbsp\u00a0here",
	"zero width \u200b",
	"\x80\x81\xfe",
	strings.Repeat("x", 300) + "\"" + strings.Repeat("é", 50),
}

// encodingJSON returns encoding/json's encoding of s with HTML escaping off.
func encodingJSON(t testing.TB, s string) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range escapeCases {
		want := encodingJSON(t, s)
		if got := string(appendJSONString(nil, s)); got != want {
			t.Errorf("string %q:\n got %s\nwant %s", s, got, want)
		}
		if got := string(appendJSONString(nil, []byte(s))); got != want {
			t.Errorf("[]byte %q:\n got %s\nwant %s", s, got, want)
		}
		// Appending keeps what is already in dst.
		if got := string(appendJSONString([]byte("x:"), s)); got != "x:"+want {
			t.Errorf("prefix lost: %q", got)
		}
		if !json.Valid(appendJSONString(nil, s)) {
			t.Errorf("%q: invalid JSON", s)
		}
	}
}

// slogTextValue returns the value slog's TextHandler writes for s.
func slogTextValue(t testing.TB, s string) string {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})
	r := slog.NewRecord(testTime, slog.LevelInfo, "m", 0)
	r.AddAttrs(slog.String("k", s))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	const prefix = "level=INFO msg=m k="
	out := buf.String()
	if !strings.HasPrefix(out, prefix) || !strings.HasSuffix(out, "\n") {
		t.Fatalf("unexpected slog text output %q", out)
	}
	return out[len(prefix) : len(out)-1]
}

func TestAppendTextValueMatchesSlog(t *testing.T) {
	for _, s := range escapeCases {
		want := slogTextValue(t, s)
		if got := string(appendTextValue(nil, s)); got != want {
			t.Errorf("string %q:\n got %s\nwant %s", s, got, want)
		}
		if got := string(appendTextValue(nil, []byte(s))); got != want {
			t.Errorf("[]byte %q:\n got %s\nwant %s", s, got, want)
		}
	}
}

func TestAppendQuotedMatchesStrconv(t *testing.T) {
	for _, s := range escapeCases {
		want := strconv.Quote(s)
		if got := string(appendQuoted(nil, s)); got != want {
			t.Errorf("string %q: got %s want %s", s, got, want)
		}
		if got := string(appendQuoted(nil, []byte(s))); got != want {
			t.Errorf("[]byte %q: got %s want %s", s, got, want)
		}
	}
}

// TestAppendJSONStringWordScan puts each byte that needs escaping (and
// the first byte of a multi-byte character) at every position of strings
// longer than the 8-byte words the fast scan checks.
func TestAppendJSONStringWordScan(t *testing.T) {
	specials := []string{"\"", "\\", "\x00", "\x1f", " ", "\x7f", "\x80", "\xff", "é", "\u2028"}
	for _, sp := range specials {
		for n := 0; n <= 24; n++ {
			for at := 0; at <= n; at++ {
				s := strings.Repeat("a", at) + sp + strings.Repeat("b", n-at)
				want := encodingJSON(t, s)
				if got := string(appendJSONString(nil, s)); got != want {
					t.Fatalf("string %q: got %s want %s", s, got, want)
				}
				if got := string(appendJSONString(nil, []byte(s))); got != want {
					t.Fatalf("[]byte %q: got %s want %s", s, got, want)
				}
			}
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range escapeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := encodingJSON(t, s)
		if got := string(appendJSONString(nil, s)); got != want {
			t.Fatalf("string %q: got %s want %s", s, got, want)
		}
		if got := string(appendJSONString(nil, []byte(s))); got != want {
			t.Fatalf("[]byte %q: got %s want %s", s, got, want)
		}
	})
}

func FuzzAppendTextValue(f *testing.F) {
	for _, s := range escapeCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := slogTextValue(t, s)
		if got := string(appendTextValue(nil, []byte(s))); got != want {
			t.Fatalf("%q: got %s want %s", s, got, want)
		}
		if got, want := string(appendQuoted(nil, s)), strconv.Quote(s); got != want {
			t.Fatalf("%q: quoted %s want %s", s, got, want)
		}
	})
}

func TestAppendMillis(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.000"},
		{412 * time.Microsecond, "0.412"},
		{412*time.Microsecond + 499*time.Nanosecond, "0.412"},
		{412*time.Microsecond + 500*time.Nanosecond, "0.413"},
		{time.Microsecond, "0.001"},
		{10 * time.Microsecond, "0.010"},
		{time.Millisecond, "1.000"},
		{1500 * time.Millisecond, "1500.000"},
		{time.Hour + 7*time.Microsecond, "3600000.007"},
		{-1500 * time.Microsecond, "-1.500"},
		{math.MaxInt64, "9223372036854.775"},
		{math.MinInt64, "-9223372036854.775"},
	} {
		got := string(appendMillis(nil, c.d))
		if got != c.want {
			t.Errorf("appendMillis(%v) = %s, want %s", c.d, got, c.want)
		}
		var f float64
		if err := json.Unmarshal([]byte(got), &f); err != nil {
			t.Errorf("appendMillis(%v) = %s: not a JSON number: %v", c.d, got, err)
		}
	}
}

func TestAppendRFC3339Nano(t *testing.T) {
	base := time.Date(2026, 12, 6, 7, 8, 9, 0, time.UTC)
	for _, tm := range []time.Time{
		base,
		base.Add(1),
		base.Add(10),
		base.Add(120 * time.Millisecond),
		base.Add(999999999),
		base.Add(100000000),
		base.Add(123456789),
		time.Date(1, 1, 1, 0, 0, 0, 5, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999990, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		base.In(time.FixedZone("X", 3600)),
		time.Now().UTC(),
	} {
		if got, want := string(appendRFC3339Nano([]byte("x"), tm)), "x"+tm.Format(time.RFC3339Nano); got != want {
			t.Errorf("%v: %s, want %s", tm, got, want)
		}
	}
}

func TestAppendRFC3339Millis(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 26, 6, 30, 0, 0, time.UTC),
		time.Date(2026, 11, 26, 6, 30, 0, 123456789, time.UTC),
		time.Date(2026, 11, 26, 6, 30, 0, 999999999, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6000000, time.UTC),
	} {
		got := string(appendRFC3339Millis(nil, tm))
		want := tm.Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z07:00")
		if got != want {
			t.Errorf("%v: got %s want %s", tm, got, want)
		}
	}
}
