package certs

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestZapToSlog checks that the ACME client's zap lines reach slog with
// their level, logger name and fields, and that slog's level filters
// them before any formatting.
func TestZapToSlog(t *testing.T) {
	b := &logBuffer{}
	zl := newZapLogger(slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})))
	zl.Named("obtain").With(zap.String("identifier", "app.test")).Error("could not get certificate",
		zap.Error(errors.New("rate limited")), zap.Int("attempt", 2), zap.Strings("names", []string{"a", "b"}))
	zl.Debug("noisy detail")
	zl.Warn("lock wait", zap.Duration("waited", 1500000000))
	out := b.String()
	for _, want := range []string{
		`level=ERROR msg="could not get certificate" component=acme logger=obtain identifier=app.test error="rate limited" attempt=2 names="[a b]"`,
		`level=WARN msg="lock wait" component=acme waited=1.5s`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "noisy") {
		t.Errorf("debug line passed an info handler:\n%s", out)
	}
}
