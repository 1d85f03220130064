package l7

import (
	"testing"

	"go.uber.org/goleak"

	_ "github.com/rustygate/rustygate/l7/middleware/standard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
