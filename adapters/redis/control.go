package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/control"
)

// Control is the control plane's state in Redis: the state document, its
// revision, and the audit log, under one hash tag ({<prefix>:control}) so a
// commit changes them together in one script, on Redis Cluster too. A
// commit is a compare-and-set on the revision: a change based on an older
// revision is refused, whichever node or admin made it.
type Control struct{ s *Store }

var _ control.Store = (*Control)(nil)

// Control returns the control plane's store over this node's connection.
func (s *Store) Control() *Control { return &Control{s: s} }

func (c *Control) key(k string) string { return "{" + c.s.cfg.Prefix + ":control}:" + k }
func (c *Control) channel() string     { return c.s.cfg.Prefix + ":control" }

// commitScript: KEYS state, revision, audit; ARGV base, state, revision,
// channel, audit cap, audit entries... Returns -1 when committed, else the
// revision the store is at.
var commitScript = goredis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= tonumber(ARGV[1]) then return cur end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
for i = 6, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
redis.call('PUBLISH', ARGV[4], ARGV[3])
return -1
`)

// Load returns the current state; Revision 0 when there is none.
func (c *Control) Load(ctx context.Context) (*control.State, error) {
	b, err := c.s.rdb.Get(ctx, c.key("state")).Bytes()
	if isNil(err) {
		return &control.State{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the control state: %w", err)
	}
	var st control.State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("the control state in Redis (%s) does not decode: %w", c.key("state"), err)
	}
	return &st, nil
}

// Commit stores next and appends audit if the store is still at base.
func (c *Control) Commit(ctx context.Context, base int64, next *control.State, audit []control.Entry) error {
	if next.Revision != base+1 {
		return fmt.Errorf("commit: revision %d does not follow %d", next.Revision, base)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	args := []any{base, b, next.Revision, c.channel(), control.AuditCap}
	for _, e := range audit {
		eb, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		args = append(args, eb)
	}
	r, err := commitScript.Run(ctx, c.s.rdb, []string{c.key("state"), c.key("revision"), c.key("audit")}, args...).Int64()
	if err != nil {
		return fmt.Errorf("commit revision %d: %w", next.Revision, err)
	}
	if r != -1 {
		return fmt.Errorf("%w (store at %d, change based on %d)", control.ErrConflict, r, base)
	}
	return nil
}

// Append adds audit entries.
func (c *Control) Append(ctx context.Context, audit []control.Entry) error {
	if len(audit) == 0 {
		return nil
	}
	vals := make([]any, 0, len(audit))
	for _, e := range audit {
		eb, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		vals = append(vals, eb)
	}
	pipe := c.s.rdb.TxPipeline()
	pipe.RPush(ctx, c.key("audit"), vals...)
	pipe.LTrim(ctx, c.key("audit"), -control.AuditCap, -1)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Audit returns up to limit of the newest entries concerning org (all when
// org is ""), oldest first. Entries that do not decode are skipped.
func (c *Control) Audit(ctx context.Context, org string, limit int) ([]control.Entry, error) {
	raw, err := c.s.rdb.LRange(ctx, c.key("audit"), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read the audit log: %w", err)
	}
	all := make([]control.Entry, 0, len(raw))
	for _, r := range raw {
		var e control.Entry
		if json.Unmarshal([]byte(r), &e) == nil {
			all = append(all, e)
		}
	}
	return control.Filter(all, org, limit), nil
}

// Watch delivers the revision each time it changes, until ctx ends (the
// channel is then closed): at once by pub/sub, and by a periodic check
// (plan_check_interval) that catches a notice lost while the connection was
// down. A slow reader misses intermediate revisions, never the latest.
func (c *Control) Watch(ctx context.Context) <-chan int64 {
	out := make(chan int64, 1)
	sub := c.s.rdb.Subscribe(ctx, c.channel())
	current := func() (int64, error) {
		rctx, cancel := context.WithTimeout(ctx, c.s.cfg.ReadTimeout+time.Second)
		defer cancel()
		v, err := c.s.rdb.Get(rctx, c.key("revision")).Result()
		if isNil(err) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(v, 10, 64)
	}
	last, _ := current()
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		tick := time.NewTicker(c.s.cfg.PlanCheckInterval)
		defer tick.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-msgs:
			case <-tick.C:
			}
			v, err := current()
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !failing {
					c.s.log.Warn("plan check failed: Redis unavailable; the node keeps its plan", "err", err)
					failing = true
				}
				continue
			}
			failing = false
			if v == last || v == 0 {
				continue
			}
			last = v
			select {
			case <-out:
			default:
			}
			out <- v
		}
	}()
	return out
}
