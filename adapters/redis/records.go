package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
)

// recordWriter appends call records to the stream from a bounded buffer, so
// a call's end never waits on Redis and a brief Redis outage loses nothing:
// records wait and are retried in order. A record is written at least once
// (a connection cut after Redis took a batch may repeat it; call_id tells).
type recordWriter struct {
	s      *Store
	key    string
	buf    chan []byte
	mu     sync.Mutex
	closed bool
	stop   chan struct{} // Close: flush what is left, then end
	done   chan struct{}
	ctx    context.Context // Close's deadline for the last flush
	ctxMu  sync.Mutex
	// queued and written count records, so Flush knows when its are in.
	queued, written atomic.Uint64
}

func newRecordWriter(s *Store) *recordWriter {
	return &recordWriter{s: s, key: s.cfg.Prefix + ":" + s.cfg.RecordStream, buf: make(chan []byte, s.cfg.RecordBuffer),
		stop: make(chan struct{}), done: make(chan struct{}), ctx: context.Background()}
}

// Write queues a finished call's record for the stream. It fails only when
// the buffer is full (Redis down for long): that record is lost, and said.
func (s *Store) Write(ctx context.Context, r *controller.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("record %s: %w", r.CallID, err)
	}
	w := s.rec
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("record %s: store closed", r.CallID)
	}
	select {
	case w.buf <- b:
		w.queued.Add(1)
		return nil
	default:
		return fmt.Errorf("record %s: buffer of %d records full while Redis is unavailable: record dropped",
			r.CallID, cap(w.buf))
	}
}

func (w *recordWriter) run() {
	defer w.s.wg.Done()
	defer close(w.done)
	var batch [][]byte
	backoff := 100 * time.Millisecond
	waiting, stopping := false, false
	for {
		if len(batch) == 0 && !stopping {
			select {
			case b := <-w.buf:
				batch = append(batch, b)
			case <-w.stop:
				stopping = true
			}
		}
	fill:
		for len(batch) < 256 {
			select {
			case b := <-w.buf:
				batch = append(batch, b)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return // stopping, nothing left
		}
		ctx, cancel := context.WithTimeout(w.s.ctx, 5*time.Second)
		if stopping {
			w.ctxMu.Lock()
			ctx, cancel = context.WithTimeout(w.ctx, 5*time.Second)
			w.ctxMu.Unlock()
		}
		err := w.flush(ctx, batch)
		cancel()
		if err == nil {
			w.written.Add(uint64(len(batch)))
			if waiting {
				w.s.log.Info("call records written after Redis came back", "records", len(batch), "still_waiting", len(w.buf))
				waiting = false
			}
			batch = batch[:0]
			backoff = 100 * time.Millisecond
			continue
		}
		if stopping && w.closeCtx().Err() != nil {
			w.s.log.Error("call records lost at shutdown: Redis unavailable", "records", len(batch)+len(w.buf), "err", err)
			return
		}
		if !waiting {
			w.s.log.Warn("call records wait in memory: Redis unavailable; retrying", "waiting", len(batch)+len(w.buf),
				"buffer", cap(w.buf), "err", err)
			waiting = true
		}
		t := time.NewTimer(backoff)
		if stopping {
			select {
			case <-t.C:
			case <-w.closeCtx().Done():
			}
		} else {
			select {
			case <-t.C:
			case <-w.stop:
				stopping = true
			}
		}
		t.Stop()
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Flush waits until every record written before it is in the stream, or
// ctx ends.
func (s *Store) Flush(ctx context.Context) error {
	want := s.rec.queued.Load()
	for s.rec.written.Load() < want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush call records: %d waiting: %w", want-s.rec.written.Load(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (w *recordWriter) closeCtx() context.Context {
	w.ctxMu.Lock()
	defer w.ctxMu.Unlock()
	return w.ctx
}

func (w *recordWriter) flush(ctx context.Context, batch [][]byte) error {
	pipe := w.s.rdb.Pipeline()
	for _, b := range batch {
		pipe.XAdd(ctx, &goredis.XAddArgs{Stream: w.key, MaxLen: w.s.cfg.RecordCap, Values: []any{"record", b}})
	}
	_, err := pipe.Exec(ctx)
	return err
}

// close flushes what is buffered within ctx and stops the writer.
func (w *recordWriter) close(ctx context.Context) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	w.mu.Unlock()
	w.ctxMu.Lock()
	w.ctx = ctx
	w.ctxMu.Unlock()
	close(w.stop)
	<-w.done
}

// Follow calls fn with each call record in the stream after from, in order,
// then waits for new ones, until ctx ends (nil) or fn fails (its error).
// from is "0" (or "all") for the oldest record kept, "" or "$" for records
// written from now on, a stream id to continue after it, or an RFC 3339 time.
// A record that does not decode is logged and skipped; Redis going away is
// logged and retried.
func (s *Store) Follow(ctx context.Context, from string, fn func(controller.Record) error) error {
	ms, seq, newOnly, err := memory.ParseFrom(from)
	if err != nil {
		return err
	}
	key := s.rec.key
	last := strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
	backoff := 100 * time.Millisecond
	resolved := !newOnly
	for ctx.Err() == nil {
		if !resolved {
			// "$" is resolved once to the newest id, so that nothing written
			// between two reads is missed.
			xs, err := s.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
			if err != nil {
				if !s.followWait(ctx, err, &backoff) {
					return nil
				}
				continue
			}
			last = "0-0"
			if len(xs) == 1 {
				last = xs[0].ID
			}
			resolved = true
		}
		res, err := s.rdb.XRead(ctx, &goredis.XReadArgs{Streams: []string{key, last}, Count: 100, Block: time.Second}).Result()
		if err != nil {
			if isNil(err) {
				continue // nothing new within the block time
			}
			if !s.followWait(ctx, err, &backoff) {
				return nil
			}
			continue
		}
		backoff = 100 * time.Millisecond
		for _, st := range res {
			for _, m := range st.Messages {
				last = m.ID
				if err := deliver(m, fn, s.log); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// deliver decodes one stream entry and hands it to fn; an entry that does
// not decode is logged and skipped.
func deliver(m goredis.XMessage, fn func(controller.Record) error, log *slog.Logger) error {
	raw, _ := m.Values["record"].(string)
	var r controller.Record
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		log.Warn("call record in the stream does not decode: skipped", "id", m.ID, "err", err)
		return nil
	}
	return fn(r)
}

// List calls fn with each record kept in the stream after from (as for
// Follow; "" and "$" mean from the oldest here), in order, and returns. It
// reads with a client of its own: a reader is not a node and takes no lease.
func List(ctx context.Context, cfg Config, from string, fn func(controller.Record) error, log *slog.Logger) error {
	if from == "" || from == "$" {
		from = "0"
	}
	ms, seq, _, err := memory.ParseFrom(from)
	if err != nil {
		return err
	}
	cfg.Defaults()
	rdb, err := NewClient(cfg, "callctl-records")
	if err != nil {
		return err
	}
	defer rdb.Close()
	if log == nil {
		log = slog.Default()
	}
	key := cfg.Prefix + ":" + cfg.RecordStream
	start := "(" + strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq, 10)
	const page = 500
	for {
		msgs, err := rdb.XRangeN(ctx, key, start, "+", page).Result()
		if err != nil && !isNil(err) {
			return fmt.Errorf("reading %s: %w", key, err)
		}
		for _, m := range msgs {
			if err := deliver(m, fn, log); err != nil {
				return err
			}
		}
		if len(msgs) < page {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}

// followWait logs a read failure and waits before the next try; false when
// ctx ended.
func (s *Store) followWait(ctx context.Context, err error, backoff *time.Duration) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return false
	}
	s.log.Warn("following call records: Redis unavailable; retrying", "err", err, "in", *backoff)
	t := time.NewTimer(*backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	*backoff = min(2**backoff, 5*time.Second)
	return true
}
