package compress

import (
	"fmt"
	"slices"

	"github.com/rustygate/rustygate/config"
)

// Settings are a compress entry's keys.
type Settings struct {
	// Encodings are the encodings offered, in the server's order of
	// preference: when the client accepts several with the same q-value,
	// the first listed wins. Default zstd, gzip, br: Caddy's order (zstd,
	// then gzip), with brotli offered last. On JSON, klauspost's gzip at
	// level 5 costs what nginx's zlib at level 1 does with a ratio close
	// to zlib's level 6, while pure-Go brotli at level 4 takes about 3.5
	// times gzip's CPU for the same ratio: it is worth it for a client
	// that accepts nothing else (or prefers it by q-value), not by default.
	Encodings []string `yaml:"encodings"`
	// MinLength is the smallest body compressed, in bytes (default 1024,
	// as Traefik: below about one packet, compression saves nothing
	// worth its CPU and header bytes). 0 compresses every non-empty body.
	MinLength int `yaml:"min_length"`
	// ContentTypes are the media types compressed: "type/subtype",
	// "type/*" or "type/*+suffix" ("application/*+json"), matched
	// case-insensitively, parameters ignored.
	ContentTypes []string `yaml:"content_types"`
	// Levels per encoding: gzip 1-9 (default 5, as Caddy), zstd 1-22
	// (default 3, zstd's own; the encoder has four speeds: 1-2, 3-5,
	// 6-9, 10-22), brotli 0-11 (default 4, the usual choice for
	// responses compressed on the fly).
	GzipLevel   int `yaml:"gzip_level"`
	ZstdLevel   int `yaml:"zstd_level"`
	BrotliLevel int `yaml:"brotli_level"`
}

// maxMinLength bounds min_length: that many bytes of a response of
// unknown length are held in memory before deciding.
const maxMinLength = 1 << 20

// DefaultSettings returns the settings of an entry that writes no key.
func DefaultSettings() *Settings {
	return &Settings{
		Encodings:    []string{"zstd", "gzip", "br"},
		MinLength:    1024,
		ContentTypes: slices.Clone(defaultContentTypes),
		GzipLevel:    5,
		ZstdLevel:    3,
		BrotliLevel:  4,
	}
}

// defaultContentTypes are the text formats served compressed by default
// (Caddy's list, with the +json/+xml families).
var defaultContentTypes = []string{
	"text/*",
	"application/json",
	"application/*+json",
	"application/x-ndjson",
	"application/javascript",
	"application/x-javascript",
	"application/xml",
	"application/*+xml",
	"application/wasm",
	"image/svg+xml",
}

// Validate implements config.SettingsValidator.
func (s *Settings) Validate(c *config.SettingsCheck) {
	if len(s.Encodings) == 0 {
		c.Errorf("encodings", "must list at least one of zstd, br, gzip")
	}
	for i, e := range s.Encodings {
		a, ok := algorithmNamed(e)
		switch {
		case !ok:
			c.Errorf(index("encodings", i), "unknown encoding %q (known: zstd, br, gzip)", e)
		case slices.ContainsFunc(s.Encodings[:i], func(p string) bool { b, _ := algorithmNamed(p); return b == a }):
			c.Errorf(index("encodings", i), "encoding %q is listed twice", e)
		}
	}
	if s.MinLength < 0 || s.MinLength > maxMinLength {
		c.Errorf("min_length", "must be between 0 and %d bytes, got %d", maxMinLength, s.MinLength)
	}
	if len(s.ContentTypes) == 0 {
		c.Errorf("content_types", "must list at least one media type")
	}
	for i, t := range s.ContentTypes {
		if _, err := parsePattern(t); err != nil {
			c.Errorf(index("content_types", i), "%v", err)
		}
	}
	for _, a := range algorithms {
		if l := s.level(a); l < a.minLevel || l > a.maxLevel {
			c.Errorf(a.levelKey, "must be between %d and %d, got %d", a.minLevel, a.maxLevel, l)
		}
	}
}

func (s *Settings) level(a *algorithm) int {
	switch a.id {
	case gzipID:
		return s.GzipLevel
	case zstdID:
		return s.ZstdLevel
	default:
		return s.BrotliLevel
	}
}

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }
