package compress

import (
	"io"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// encoder is a streaming compressor that can be reused for a new stream.
type encoder interface {
	Write(p []byte) (int, error)
	// Flush writes out what the encoder holds, so that a decoder can
	// read everything written so far.
	Flush() error
	// Close ends the stream (it does not close the writer under it).
	Close() error
	Reset(w io.Writer)
}

type algorithmID uint8

const (
	zstdID algorithmID = iota
	brotliID
	gzipID
	numAlgorithms
)

// algorithm is one content coding.
type algorithm struct {
	id algorithmID
	// token is the coding's name in Accept-Encoding and Content-Encoding.
	token string
	// alias is another name clients may send for it ("x-gzip").
	alias              string
	levelKey           string
	minLevel, maxLevel int
	// pools hold idle encoders, one pool per level.
	pools [23]sync.Pool
	newAt func(level int) encoder
}

// Window sizes bound an encoder's memory whatever the body's size. 512 KiB
// keeps most of zstd's and brotli's gain over gzip's 32 KiB on responses.
const (
	zstdWindow  = 512 << 10
	brotliLGWin = 19
)

var algorithms = [numAlgorithms]*algorithm{
	{id: zstdID, token: "zstd", levelKey: "zstd_level", minLevel: 1, maxLevel: 22, newAt: newZstd},
	{id: brotliID, token: "br", levelKey: "brotli_level", minLevel: 0, maxLevel: 11, newAt: newBrotli},
	{id: gzipID, token: "gzip", alias: "x-gzip", levelKey: "gzip_level", minLevel: 1, maxLevel: 9, newAt: newGzip},
}

func newZstd(level int) encoder {
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderConcurrency(1), // synchronous: no goroutines per stream
		zstd.WithWindowSize(zstdWindow))
	if err != nil {
		panic("compress: zstd options: " + err.Error()) // constant options
	}
	return e
}

func newBrotli(level int) encoder {
	return brotli.NewWriterOptions(nil, brotli.WriterOptions{Quality: level, LGWin: brotliLGWin})
}

func newGzip(level int) encoder {
	w, err := gzip.NewWriterLevel(nil, level)
	if err != nil {
		panic("compress: gzip level: " + err.Error()) // validated
	}
	return w
}

// get returns an encoder at level writing to w.
func (a *algorithm) get(level int, w io.Writer) encoder {
	e, _ := a.pools[level].Get().(encoder)
	if e == nil {
		e = a.newAt(level)
	}
	e.Reset(w)
	return e
}

// put returns an encoder to its pool, detached from the response it wrote
// to.
func (a *algorithm) put(level int, e encoder) {
	e.Reset(io.Discard)
	a.pools[level].Put(e)
}

// algorithmNamed returns the algorithm of a configured encoding name.
func algorithmNamed(name string) (*algorithm, bool) {
	for _, a := range algorithms {
		if strings.EqualFold(name, a.token) {
			return a, true
		}
	}
	return nil, false
}
