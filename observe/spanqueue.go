package observe

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// recordExporter sends span records to a collector; one export runs at
// a time, and the records are the caller's again when it returns.
type recordExporter interface {
	exportRecords(ctx context.Context, recs []*spanRecord) error
	Shutdown(ctx context.Context) error
}

// sdkExporter exports records through an exporter of the SDK (OTLP/gRPC),
// as the ReadOnlySpans the SDK would have built.
type sdkExporter struct {
	exp    sdktrace.SpanExporter
	origin *spanOrigin
}

func (e *sdkExporter) exportRecords(ctx context.Context, recs []*spanRecord) error {
	spans := make([]sdktrace.ReadOnlySpan, len(recs))
	for i, r := range recs {
		spans[i] = e.origin.readOnly(r)
	}
	return e.exp.ExportSpans(ctx, spans)
}

func (e *sdkExporter) Shutdown(ctx context.Context) error { return e.exp.Shutdown(ctx) }

// Defaults of the export queue (tracing.queue_size, batch_size,
// batch_timeout).
const (
	DefaultSpanQueueSize    = 8192
	DefaultSpanBatchSize    = 1024
	DefaultSpanBatchTimeout = time.Second
	// exportTimeout bounds one export call.
	exportTimeout = 10 * time.Second
	// exportWorkers is how many exports may run at once: a collector
	// serves each connection on its own, and an export mostly waits (for
	// the collector, and for a CPU while the event loops are busy), so
	// more exports in flight keep the queue moving. With one, a 2-core
	// gateway saturated by 64 connections dropped a quarter of its spans
	// from the default queue; with four, none.
	exportWorkers = 4
)

// SpanCounters are the counts of the spans that ended sampled: exported,
// dropped because the queue was full (the exporter does not keep up), or
// lost in a failed export.
type SpanCounters struct {
	Exported, Dropped, Failed uint64
}

// spanQueue takes the ended spans of a Tracer: a bounded queue that the
// request path never waits on (a span that finds it full is dropped and
// counted), emptied by one goroutine that cuts batches of batchSize, or
// of what has come after batchTimeout, and hands them to exportWorkers
// goroutines that encode and send them. While the exports run, spans
// queue up to the bound. The export (the encoding and the HTTP post)
// never runs on the event loops that end the spans.
//
// The queue is a slice under a mutex rather than a channel: the cutting
// goroutine is woken once per full batch, not once per span (a wake-up
// per span cost the loops more scheduler time than the span itself).
type spanQueue struct {
	exp          recordExporter
	closed       atomic.Bool
	queueSize    int
	batchSize    int
	batchTimeout time.Duration

	mu      sync.Mutex
	pending []*spanRecord // at most queueSize
	wake    chan struct{} // a batch is full

	exported, dropped, failed atomic.Uint64

	work    chan []*spanRecord // batches to export
	free    chan []*spanRecord // exported batches, emptied for reuse
	workers sync.WaitGroup

	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	shutdownE error
}

// newSpanQueue starts the processor's goroutine; Shutdown stops it.
func newSpanQueue(exp recordExporter, queueSize, batchSize int, batchTimeout time.Duration) *spanQueue {
	if queueSize <= 0 {
		queueSize = DefaultSpanQueueSize
	}
	if batchSize <= 0 {
		batchSize = DefaultSpanBatchSize
	}
	batchSize = min(batchSize, queueSize)
	if batchTimeout <= 0 {
		batchTimeout = DefaultSpanBatchTimeout
	}
	q := &spanQueue{
		exp: exp, queueSize: queueSize, batchSize: batchSize, batchTimeout: batchTimeout,
		pending: make([]*spanRecord, 0, queueSize), wake: make(chan struct{}, 1),
		work: make(chan []*spanRecord), free: make(chan []*spanRecord, exportWorkers+1),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	q.workers.Add(exportWorkers)
	for range exportWorkers {
		go q.worker()
	}
	go q.run()
	return q
}

// push queues a sampled span's record, or drops it when the queue is
// full (counted) or shut down (not counted).
func (q *spanQueue) push(r *spanRecord) {
	if q.closed.Load() {
		r.recycle()
		return
	}
	q.mu.Lock()
	n := len(q.pending)
	if n >= q.queueSize {
		q.mu.Unlock()
		q.dropped.Add(1)
		r.recycle()
		return
	}
	q.pending = append(q.pending, r)
	q.mu.Unlock()
	if (n+1)%q.batchSize == 0 {
		select {
		case q.wake <- struct{}{}:
		default: // already signalled
		}
	}
}

// take removes a batch from the queue: a full one, or when partial is
// set whatever is there (up to batchSize); nil when there is none. full
// says the batch is full.
func (q *spanQueue) take(partial bool) (batch []*spanRecord, full bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.pending)
	if n == 0 || (!partial && n < q.batchSize) {
		return nil, false
	}
	k := min(n, q.batchSize)
	batch = append(q.newBatch(), q.pending[:k]...)
	rest := copy(q.pending, q.pending[k:])
	clear(q.pending[rest:n])
	q.pending = q.pending[:rest]
	return batch, k == q.batchSize
}

// counters returns the processor's counts.
func (q *spanQueue) counters() SpanCounters {
	return SpanCounters{Exported: q.exported.Load(), Dropped: q.dropped.Load(), Failed: q.failed.Load()}
}

func (q *spanQueue) run() {
	defer func() {
		close(q.work)
		q.workers.Wait()
		close(q.done)
	}()
	timer := time.NewTimer(q.batchTimeout)
	defer timer.Stop()
	for {
		timeout := false
		select {
		case <-q.wake:
		case <-timer.C:
			timeout = true
		case <-q.stop:
			for b, _ := q.take(true); b != nil; b, _ = q.take(true) {
				q.work <- b
			}
			return
		}
		// The full batches, and after batch_timeout one partial batch.
		for {
			b, full := q.take(timeout)
			if b == nil {
				break
			}
			q.work <- b // waits for a worker
			if !full {
				break
			}
		}
		timer.Reset(q.batchTimeout) // drops an expiry not received (Go 1.23 timers)
	}
}

func (q *spanQueue) newBatch() []*spanRecord {
	select {
	case b := <-q.free:
		return b
	default:
		return make([]*spanRecord, 0, q.batchSize)
	}
}

// worker exports the batches it is handed.
func (q *spanQueue) worker() {
	defer q.workers.Done()
	for batch := range q.work {
		batch = q.export(batch)
		select {
		case q.free <- batch:
		default:
		}
	}
}

// export sends batch, recycles its records and returns it emptied for
// reuse.
func (q *spanQueue) export(batch []*spanRecord) []*spanRecord {
	ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
	err := q.exp.exportRecords(ctx, batch)
	cancel()
	if err != nil {
		q.failed.Add(uint64(len(batch)))
		otel.Handle(err)
	} else {
		q.exported.Add(uint64(len(batch)))
	}
	for i, r := range batch {
		r.recycle()
		batch[i] = nil
	}
	return batch[:0]
}

// Shutdown exports the queued spans, stops the goroutine and shuts the
// exporter down; ctx bounds the wait. Spans that end afterwards are
// dropped without being counted.
func (q *spanQueue) Shutdown(ctx context.Context) error {
	q.stopOnce.Do(func() {
		q.closed.Store(true)
		close(q.stop)
		select {
		case <-q.done:
		case <-ctx.Done():
			q.shutdownE = ctx.Err()
		}
		if err := q.exp.Shutdown(ctx); err != nil && q.shutdownE == nil {
			q.shutdownE = err
		}
	})
	return q.shutdownE
}
