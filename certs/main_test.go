package certs

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/rustygate/rustygate/internal/testacme"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// certmagic's package-level goroutines: one rate limiter per ACME
		// account for the life of the process, and the refreshers of
		// storage lock files, which end within 5s of the lock's release.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		goleak.Cleanup(func(code int) {
			testacme.RemoveBinary()
			os.Exit(code)
		}))
}
