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
	spans  []sdktrace.ReadOnlySpan
}

func (e *sdkExporter) exportRecords(ctx context.Context, recs []*spanRecord) error {
	for _, r := range recs {
		e.spans = append(e.spans, e.origin.readOnly(r))
	}
	err := e.exp.ExportSpans(ctx, e.spans)
	clear(e.spans)
	e.spans = e.spans[:0]
	return err
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
)

// SpanCounters are the counts of the spans that ended sampled: exported,
// dropped because the queue was full (the exporter does not keep up), or
// lost in a failed export.
type SpanCounters struct {
	Exported, Dropped, Failed uint64
}

// spanQueue takes the ended spans of a Tracer: a bounded queue that the
// request path never waits on (a span that finds it full is dropped and
// counted), emptied by one goroutine that exports in batches of
// batchSize, or what has come after batchTimeout. Exports run one at a
// time; while one runs, spans queue up to the bound. The export (the
// encoding and the HTTP post) runs on the queue's goroutine, never on
// the event loops that end the spans.
type spanQueue struct {
	exp          recordExporter
	ch           chan *spanRecord
	closed       atomic.Bool
	batchSize    int
	batchTimeout time.Duration

	exported, dropped, failed atomic.Uint64

	flush     chan chan struct{}
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
		exp: exp, ch: make(chan *spanRecord, queueSize),
		batchSize: batchSize, batchTimeout: batchTimeout,
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
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
	select {
	case q.ch <- r:
	default:
		q.dropped.Add(1)
		r.recycle()
	}
}

// counters returns the processor's counts.
func (q *spanQueue) counters() SpanCounters {
	return SpanCounters{Exported: q.exported.Load(), Dropped: q.dropped.Load(), Failed: q.failed.Load()}
}

func (q *spanQueue) run() {
	defer close(q.done)
	batch := make([]*spanRecord, 0, q.batchSize)
	timer := time.NewTimer(q.batchTimeout)
	defer timer.Stop()
	for {
		select {
		case s := <-q.ch:
			batch = append(batch, s)
			if len(batch) < q.batchSize {
				continue
			}
		case <-timer.C:
		case ack := <-q.flush:
			batch = q.drain(batch)
			close(ack)
		case <-q.stop:
			q.drain(batch)
			return
		}
		batch = q.export(batch)
		timer.Reset(q.batchTimeout)
	}
}

// drain exports batch and every span queued now, in batches.
func (q *spanQueue) drain(batch []*spanRecord) []*spanRecord {
	for {
		select {
		case s := <-q.ch:
			batch = append(batch, s)
			if len(batch) == q.batchSize {
				batch = q.export(batch)
			}
		default:
			return q.export(batch)
		}
	}
}

// export sends batch, recycles its records and returns it emptied for
// reuse.
func (q *spanQueue) export(batch []*spanRecord) []*spanRecord {
	if len(batch) == 0 {
		return batch
	}
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

// ForceFlush exports the queued spans and waits for it, or for ctx.
func (q *spanQueue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
