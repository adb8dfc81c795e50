// Package redis keeps the state a cluster of callctl nodes shares in Redis
// (single server, Sentinel or Redis Cluster, through one go-redis
// UniversalClient): channel counts tied to node leases, ownership of media
// servers, the provisioning plan and the call record stream.
//
// A node's counted legs are tied to its lease (node id plus a per-process
// incarnation). Another node releases them once the lease has expired and
// stayed expired for a heartbeat: lease_ttl plus at most two heartbeat
// intervals after the node's last heartbeat, or at once through Reconcile
// when the media server confirms the channels are gone.
//
// Redis going away: new counted legs are refused (ErrUnavailable) or, with
// fail_open, let through and counted once Redis is back; releases and call
// records wait in memory and are retried; calls already up are not touched.
// The node notices Redis is back by itself. No count is lost or doubled
// across a Redis restart: with appendonly yes and appendfsync always Redis
// keeps every count (everysec can lose the last second of them, which the
// nodes then put back); without persistence the live nodes put their legs
// back from what they hold. The plan, the records not yet read and the
// events claimed by media server owners need persistence to survive.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
)

// Store is one node's view of the cluster state in Redis. It implements
// accounting.Limiter, controller.Reconciler, controller.Owners and
// controller.RecordSink.
type Store struct {
	cfg  Config
	node string
	// lease is this process's lease: node id plus an incarnation, so that a
	// node restarted with the same id never renews (or releases through) the
	// lease of the process that died.
	lease string
	rdb   goredis.UniversalClient
	log   *slog.Logger

	tag      string // "{<prefix>:acct}:"
	holdsKey string
	leaseKey string

	up atomic.Bool
	// mu guards the holds this node believes it has. sync blocks releases
	// while legs are put back, so a release never races a resync.
	mu    sync.Mutex
	local map[string]*localHold
	sync  sync.RWMutex

	seen map[string]seenLease // expired leases of other nodes: when first seen
	// recovered is when Redis was last found back after an outage (the
	// heartbeat loop's own).
	recovered time.Time

	rec *recordWriter

	calls  chan *scriptCall // acquires and releases waiting for a pipeline
	kick   chan struct{}    // asks the heartbeat loop to run now
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// holdState is where a hold this node knows of stands in Redis.
type holdState uint8

const (
	// held: counted in Redis.
	held holdState = iota + 1
	// uncounted: let through while Redis was down (fail open); counted
	// once it is back.
	uncounted
	// releasing: released by the engine (or an acquire that failed on the
	// way and may yet have run), the release not confirmed by Redis.
	releasing
)

type localHold struct {
	h     accounting.Hold
	state holdState
}

type seenLease struct {
	score string
	first time.Time
}

// tombstoneTTL is how long a release that came before its acquire is
// remembered; hold ids are unique per leg, so this only has to outlast the
// slowest acquire still in flight.
const tombstoneTTL = 10 * time.Minute

// ErrReleased is returned by Acquire for a hold that was released before it
// was acquired: the leg is over and must not be counted now.
var ErrReleased = errors.New("hold was already released")

var (
	_ accounting.Limiter    = (*Store)(nil)
	_ controller.Reconciler = (*Store)(nil)
	_ controller.Owners     = (*Store)(nil)
	_ controller.RecordSink = (*Store)(nil)
)

// New connects to Redis as node nodeID and starts the node's heartbeat.
// An unreachable Redis is not an error: the node starts failing closed (or
// open) and recovers by itself once Redis answers. Close stops it.
func New(ctx context.Context, cfg Config, nodeID string, logger *slog.Logger) (*Store, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rdb, err := NewClient(cfg, "callctl-"+nodeID)
	if err != nil {
		return nil, err
	}
	return NewWithClient(ctx, cfg, rdb, nodeID, logger)
}

// NewWithClient is New over a client the caller made (it is closed by Close).
func NewWithClient(ctx context.Context, cfg Config, rdb goredis.UniversalClient, nodeID string, logger *slog.Logger) (*Store, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nodeID == "" || strings.ContainsAny(nodeID, "/|\x1f{}") {
		return nil, fmt.Errorf("redis: node id %q must be set and free of / | { } and control characters", nodeID)
	}
	if logger == nil {
		logger = slog.Default()
	}
	var inc [6]byte
	_, _ = rand.Read(inc[:])
	s := &Store{cfg: cfg, node: nodeID, lease: nodeID + "/" + hex.EncodeToString(inc[:]), rdb: rdb,
		log: logger.With("node", nodeID), local: map[string]*localHold{}, seen: map[string]seenLease{},
		kick: make(chan struct{}, 1), calls: make(chan *scriptCall, pipelineBatch)}
	s.tag = "{" + cfg.Prefix + ":acct}:"
	s.holdsKey = s.tag + "holds"
	s.leaseKey = s.tag + "leases"
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rec = newRecordWriter(s)

	err := s.loadScripts(ctx)
	if err == nil {
		err = s.beat(ctx)
	}
	if err != nil {
		s.log.Error("Redis unreachable at start: counted legs are "+s.downPolicy()+" until it answers", "err", err)
	} else {
		s.up.Store(true)
		s.log.Info("cluster state in Redis", "lease", s.lease, "lease_ttl", cfg.LeaseTTL, "fail_open", cfg.FailOpen)
	}
	s.wg.Add(2 + pipeliners)
	go s.heartbeatLoop()
	go s.rec.run()
	for i := 0; i < pipeliners; i++ {
		go s.pipeliner()
	}
	return s, nil
}

// Client is the Redis client (for tests and diagnostics).
func (s *Store) Client() goredis.UniversalClient { return s.rdb }

// Node is this node's id; Lease is its lease (node id and incarnation).
func (s *Store) Node() string  { return s.node }
func (s *Store) Lease() string { return s.lease }

func (s *Store) downPolicy() string {
	if s.cfg.FailOpen {
		return "let through uncounted (fail open)"
	}
	return "refused (fail closed)"
}

// Close stops the node: records still buffered are flushed (within ctx),
// pending releases are sent, and the lease is removed if no leg is held
// (legs still held stay until their lease expires). The client is closed.
func (s *Store) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.rec.close(ctx)
	s.cancel()
	s.wg.Wait()
	var err error
	if s.up.Load() {
		s.syncPending(ctx)
		s.mu.Lock()
		n := len(s.local)
		s.mu.Unlock()
		if n == 0 {
			pipe := s.rdb.TxPipeline()
			pipe.ZRem(ctx, s.leaseKey, s.lease)
			pipe.Del(ctx, s.tag+"l:"+s.lease)
			if _, e := pipe.Exec(ctx); e != nil {
				err = fmt.Errorf("close: remove lease: %w", e)
			}
		} else {
			s.log.Warn("closing with counted legs still held: they go when the lease expires", "legs", n)
		}
	}
	if e := s.rdb.Close(); e != nil && err == nil {
		err = e
	}
	return err
}

// loadScripts puts every script in Redis's cache (on every master), so that
// each later call is a single EVALSHA round trip.
func (s *Store) loadScripts(ctx context.Context) error {
	load := func(ctx context.Context, c *goredis.Client) error {
		for _, sc := range allScripts {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	switch c := s.rdb.(type) {
	case *goredis.ClusterClient:
		return c.ForEachMaster(ctx, load)
	case *goredis.Client:
		return load(ctx, c)
	}
	return nil // other clients: EVALSHA falls back to EVAL once
}

// markDown records that Redis failed; the first failure says so loudly.
func (s *Store) markDown(err error) {
	if s.up.Swap(false) {
		s.log.Error("Redis unreachable: new counted legs are "+s.downPolicy()+"; calls up keep going; releases and records wait",
			"err", err)
		s.poke()
	}
}

func (s *Store) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// failed says whether err means Redis is not usable (as opposed to the
// caller giving up).
func failed(ctx context.Context, err error) bool {
	return err != nil && !errors.Is(ctx.Err(), context.Canceled)
}

// heartbeatLoop renews the lease, looks for expired leases of other nodes,
// and sends what waits (releases, uncounted legs). While Redis is down it
// probes more often, to notice its return quickly.
func (s *Store) heartbeatLoop() {
	defer s.wg.Done()
	for {
		every := s.cfg.HeartbeatInterval
		if !s.up.Load() && every > 250*time.Millisecond {
			every = 250 * time.Millisecond
		}
		t := time.NewTimer(every)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-s.kick:
			t.Stop()
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HeartbeatInterval+s.cfg.ReadTimeout)
		s.tick(ctx)
		cancel()
	}
}

func (s *Store) tick(ctx context.Context) {
	wasUp := s.up.Load()
	if err := s.beat(ctx); err != nil {
		if failed(ctx, err) {
			s.markDown(err)
		}
		return
	}
	if !wasUp {
		if err := s.loadScripts(ctx); err != nil {
			s.markDown(err)
			return
		}
		s.up.Store(true)
		s.recovered = time.Now()
		s.mu.Lock()
		n := len(s.local)
		s.mu.Unlock()
		s.log.Info("Redis reachable again: counting legs", "legs_known", n)
		// Redis may have lost writes (a restart with appendfsync everysec,
		// a failover to a replica that lagged): make its view of this node's
		// legs match the node's own.
		if err := s.reconcileOwn(ctx); err != nil {
			s.markDown(err)
			return
		}
	}
	s.syncPending(ctx)
	s.sweep(ctx)
}

// beat renews the lease; when the lease was new (reaped while this node was
// cut off, or Redis lost it) the node's legs are put back.
func (s *Store) beat(ctx context.Context) error {
	before := s.heldCount()
	res, err := heartbeatScript.Run(ctx, s.rdb, []string{s.leaseKey, s.tag + "l:" + s.lease}, s.lease,
		s.cfg.LeaseTTL.Milliseconds()).Int64Slice()
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("heartbeat: unexpected reply %v", res)
	}
	if res[0] == 0 {
		return s.resync(ctx, false)
	}
	if int(res[1]) != before && int(res[1]) != s.heldCount() {
		// Usually acquires and releases in flight; checkOwn looks again
		// with none.
		return s.checkOwn(ctx)
	}
	return nil
}

// reconcileOwn releases the legs Redis counts for this node's lease that the
// node does not hold (their release was lost), and puts back those it holds
// that Redis lost.
func (s *Store) reconcileOwn(ctx context.Context) error {
	s.sync.Lock()
	defer s.sync.Unlock()
	return s.reconcileOwnLocked(ctx)
}

// checkOwn compares, with no acquire or release in flight, how many legs
// Redis counts for this node with how many it holds, and reconciles them if
// they differ (Redis restarted and lost its last writes, unnoticed).
func (s *Store) checkOwn(ctx context.Context) error {
	s.sync.Lock()
	defer s.sync.Unlock()
	n, err := s.rdb.SCard(ctx, s.tag+"l:"+s.lease).Result()
	if err != nil {
		return fmt.Errorf("check own legs: %w", err)
	}
	if int(n) == s.heldCount() {
		return nil
	}
	s.log.Warn("Redis counts a different number of legs for this node than it holds: reconciling",
		"redis", n, "held", s.heldCount())
	return s.reconcileOwnLocked(ctx)
}

func (s *Store) heldCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, lh := range s.local {
		if lh.state == held {
			n++
		}
	}
	return n
}

func (s *Store) reconcileOwnLocked(ctx context.Context) error {
	ids, err := s.rdb.SMembers(ctx, s.tag+"l:"+s.lease).Result()
	if err != nil {
		return fmt.Errorf("reconcile own legs: %w", err)
	}
	var extra []string
	s.mu.Lock()
	for _, id := range ids {
		if lh := s.local[id]; lh == nil || lh.state == releasing {
			extra = append(extra, id)
		}
	}
	s.mu.Unlock()
	for _, id := range extra {
		if err := s.release(ctx, id); err != nil {
			return fmt.Errorf("reconcile own legs: %w", err)
		}
		s.log.Warn("released a leg Redis still counted for this node after its release was lost", "call", callOf(id), "hold", id)
	}
	return s.resyncLocked(ctx, false)
}

// resync puts back the legs this node holds (all of them, or only those let
// through uncounted).
func (s *Store) resync(ctx context.Context, onlyUncounted bool) error {
	s.sync.Lock()
	defer s.sync.Unlock()
	return s.resyncLocked(ctx, onlyUncounted)
}

// resyncLocked is resync with s.sync held.
func (s *Store) resyncLocked(ctx context.Context, onlyUncounted bool) error {
	s.mu.Lock()
	var hs []*localHold
	for _, lh := range s.local {
		if lh.state == uncounted || lh.state == held && !onlyUncounted {
			hs = append(hs, lh)
		}
	}
	s.mu.Unlock()
	if len(hs) == 0 {
		return nil
	}
	added := 0
	for len(hs) > 0 {
		batch := hs[:min(len(hs), 200)]
		hs = hs[len(batch):]
		args := []any{s.tag, s.lease}
		for _, lh := range batch {
			args = append(args, lh.h.ID, lh.h.Leg.Server, lh.h.Leg.Org, lh.h.Channel)
		}
		n, err := resyncScript.Run(ctx, s.rdb, []string{s.holdsKey, s.leaseKey}, args...).Int()
		if err != nil {
			return fmt.Errorf("put legs back: %w", err)
		}
		if n < 0 {
			return fmt.Errorf("put legs back: lease %s vanished", s.lease)
		}
		added += n
		s.mu.Lock()
		for _, lh := range batch {
			if lh.state == uncounted {
				lh.state = held
			}
		}
		s.mu.Unlock()
	}
	if added > 0 {
		s.log.Warn("counted legs put back in Redis (lease had lapsed or legs were let through while Redis was down)",
			"legs", added)
	}
	return nil
}
