package redis

import (
	"context"
	"errors"

	goredis "github.com/redis/go-redis/v9"
)

// Acquires and releases from many concurrent calls are sent in pipelines:
// whatever is waiting when a pipeline leaves goes in it. Each hold still
// costs one script in one round trip, but a node's calls share the system
// calls, which on a small machine cost more than Redis's work.

const (
	pipeliners    = 4
	pipelineBatch = 128
)

type scriptCall struct {
	sc   *goredis.Script
	keys []string
	args []any
	res  chan scriptResult
}

type scriptResult struct {
	v   int64
	err error
}

var errClosed = errors.New("cluster state closed")

// runScript runs one accounting script through the pipelines and returns
// its integer result.
func (s *Store) runScript(ctx context.Context, c *scriptCall) (int64, error) {
	r, err := s.runScripts(ctx, c)
	if err != nil {
		return 0, err
	}
	return r[0], nil
}

// runScripts runs accounting scripts through the pipelines at once (in one
// round trip when they go in one pipeline) and returns their results, or
// the first error.
func (s *Store) runScripts(ctx context.Context, calls ...*scriptCall) ([]int64, error) {
	out := make([]int64, len(calls))
	for _, c := range calls {
		c.res = make(chan scriptResult, 1)
		select {
		case s.calls <- c:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
			// Closing: no pipeline runs any more, send it alone.
			v, err := c.sc.Run(ctx, s.rdb, c.keys, c.args...).Int64()
			c.res <- scriptResult{v: v, err: err}
		}
	}
	var first error
	for i, c := range calls {
		select {
		case r := <-c.res:
			out[i] = r.v
			if r.err != nil && first == nil {
				first = r.err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, first
}

func (s *Store) pipeliner() {
	defer s.wg.Done()
	batch := make([]*scriptCall, 0, pipelineBatch)
	cmds := make([]*goredis.Cmd, 0, pipelineBatch)
	for {
		select {
		case c := <-s.calls:
			batch = append(batch, c)
		case <-s.ctx.Done():
			return
		}
	more:
		for len(batch) < pipelineBatch {
			select {
			case c := <-s.calls:
				batch = append(batch, c)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadTimeout+s.cfg.WriteTimeout)
		pipe := s.rdb.Pipeline()
		for _, c := range batch {
			cmds = append(cmds, c.sc.EvalSha(ctx, pipe, c.keys, c.args...))
		}
		_, _ = pipe.Exec(ctx) // each command carries its own error
		for i, c := range batch {
			v, err := cmds[i].Int64()
			if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
				// Redis restarted and lost its script cache: send the script.
				v, err = c.sc.Eval(ctx, s.rdb, c.keys, c.args...).Int64()
			}
			c.res <- scriptResult{v: v, err: err}
		}
		cancel()
		clear(batch)
		clear(cmds)
		batch, cmds = batch[:0], cmds[:0]
	}
}
