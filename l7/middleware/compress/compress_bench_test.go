package compress

import (
	"fmt"
	"testing"
)

// BenchmarkFilter compresses one JSON response of each size through the
// middleware's filter, as the proxy drives it (pools warm).
func BenchmarkFilter(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		for _, coding := range []string{"gzip", "zstd", "br"} {
			b.Run(fmt.Sprintf("%s/%dKiB", coding, size>>10), func(b *testing.B) {
				body := jsonBody(size)
				h := newTestHandler(b, nil)
				resp := [][2]string{{"Content-Type", "application/json"}, {"Content-Length", fmt.Sprint(size)}}
				ex := newExchange([][2]string{{"Accept-Encoding", coding}}, resp)
				ex.body.Grow(size)
				ex.respHdr = make([][2]string, 0, 8)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					ex.body.Reset()
					ex.headAt = -1
					ex.respHdr = append(ex.respHdr[:0], resp...)
					f := h.FilterResponseBody(ex, ex)
					f.Write(body)
					f.Close(true)
				}
			})
		}
	}
}
