// Package redis keeps the state a cluster of callctl nodes shares in Redis
// (single server, Sentinel or Redis Cluster, through one go-redis
// UniversalClient): channel counts tied to node leases, ownership of media
// servers, the provisioning plan, the call record stream and the call
// stories that link a transferred call's record to the call before it.
//
// Counts are partitioned by media server and by org (scripts.go says how),
// so a Redis Cluster spreads them over its masters.
//
// A node's counted legs are tied to its lease (node id plus a per-process
// incarnation). A leg is released only when its channel is gone: when a
// node's lease has expired and stayed expired for a heartbeat, a live node
// that serves media servers adopts its legs (they become that node's, in
// Redis and in its memory), and they are released when the media server's
// live channel list no longer has them (Reconcile, run by the adopter and by
// each server's owner). A node restarted with the same id takes the legs of
// its earlier incarnation back at once.
//
// Redis going away: new counted legs are refused (ErrUnavailable) or, with
// fail_open, let through and counted once Redis is back; releases and call
// records wait in memory and are retried; calls already up are not touched.
// The node notices Redis is back by itself.
//
// Redis losing data (a restart without persistence or with the last second
// of it lost, a failover to a replica that lagged) is detected: every new
// connection reads the server's run id, and a master the node has not seen
// before (restarted, or promoted) means the data may have gone back in time,
// before any command runs on it; an epoch key that a restart without data
// cannot bring back catches the rest. The nodes then refuse new counted legs
// until every live node has put back the legs it holds (or one lease TTL has
// passed for a node that does not), and counting resumes exactly. The plan,
// the records not yet read and the events claimed by media server owners
// need persistence to survive.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
)

// Store is one node's view of the cluster state in Redis. It implements
// accounting.Limiter, controller.Reconciler, controller.Owners,
// controller.RecordSink and controller.Stories.
type Store struct {
	cfg  Config
	node string
	// inc is this process: node id plus an incarnation, so that a node
	// restarted with the same id never renews the lease of the process that
	// died. It owns media servers under this name.
	inc string
	rdb goredis.UniversalClient
	log *slog.Logger

	gtag      string // "{<prefix>:acct}:"
	clustered bool   // a Redis Cluster: partitions may be on different masters

	up atomic.Bool
	// mu guards the holds this node believes it has, its lease and where the
	// lease is registered. sync blocks acquires and releases while legs are
	// put back, so neither races a rebuild.
	mu         sync.Mutex
	local      map[string]*localHold
	tombs      map[string]time.Time // released before acquired, by id
	lease      string               // the lease legs are counted under
	leaseN     int                  // leases this process took after losing one
	registered map[string]bool      // partitions registered for lease
	regMu      sync.Mutex           // one registration at a time
	sync       sync.RWMutex
	// tickMu runs one heartbeat at a time (the loop's, or an acquire's that
	// found the lease lost); what follows is guarded by it.
	tickMu    sync.Mutex
	beaten    bool
	seen      map[string]seenLease // expired leases of other nodes: when first seen
	recovered time.Time            // when counting last resumed after an outage or a recovery
	live      []string             // the live leases the last heartbeat before a loss saw
	epoch     string               // the cluster's epoch as this node knows it
	recov     recState             // the recovery the last heartbeat saw
	published bool                 // this node put its legs back for the recovery under way
	tookBack  bool                 // the legs of earlier incarnations of this node were taken back

	lineage    *lineage
	epochGen   atomic.Uint64 // grows each time Redis changed under the node
	lost       atomic.Bool   // data may be lost: begin or join a recovery
	recovering atomic.Bool   // counted legs are refused until the recovery ends
	adopts     atomic.Bool   // this node serves media servers: it adopts dead nodes' legs
	adoptedCh  chan struct{}
	nLoss      atomic.Uint64

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
	// adopted: counted in Redis under this node's lease for a node that
	// died; no call here, released when its channel is gone.
	adopted
)

type localHold struct {
	h     accounting.Hold
	state holdState
}

type seenLease struct {
	score string
	first time.Time
}

// recState is a recovery after data loss as the heartbeat saw it.
type recState struct {
	epoch   string
	left    time.Duration
	pending int64
	mine    bool
}

// tombstoneTTL is how long a release that came before its acquire is
// remembered; hold ids are unique per leg, so this only has to outlast the
// slowest acquire still in flight.
const tombstoneTTL = 10 * time.Minute

// goneTTL is how long a partition refuses acquires under a lease that was
// adopted: far longer than a node can go without noticing it lost its lease.
const goneTTL = 24 * time.Hour

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
	return newStore(ctx, cfg, nodeID, logger)
}

// newStore is New with go-redis hooks installed before the store uses its
// client (tests watch the commands).
func newStore(ctx context.Context, cfg Config, nodeID string, logger *slog.Logger, hooks ...goredis.Hook) (*Store, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if nodeID == "" || strings.ContainsAny(nodeID, "/|.\x1f{}") {
		return nil, fmt.Errorf("redis: node id %q must be set and free of / | . { } and control characters", nodeID)
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{cfg: cfg, node: nodeID, inc: nodeID + "/" + token(6), log: logger.With("node", nodeID),
		local: map[string]*localHold{}, tombs: map[string]time.Time{}, registered: map[string]bool{},
		seen: map[string]seenLease{}, kick: make(chan struct{}, 1), calls: make(chan *scriptCall, pipelineBatch),
		adoptedCh: make(chan struct{}, 1)}
	s.lease = s.inc
	s.lineage = &lineage{known: map[string]bool{}, changed: s.lineageChanged, log: s.log}
	rdb, err := newClient(cfg, "callctl-"+nodeID, s.lineage.onConnect)
	if err != nil {
		return nil, err
	}
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	s.rdb = rdb
	_, s.clustered = rdb.(*goredis.ClusterClient)
	s.gtag = "{" + cfg.Prefix + ":acct}:"
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rec = newRecordWriter(s)

	err = s.loadScripts(ctx)
	if err == nil {
		s.lineage.arm()
		s.tickMu.Lock()
		err = s.beat(ctx)
		s.tickMu.Unlock()
	}
	if err != nil {
		s.log.Error("Redis unreachable at start: counted legs are "+s.downPolicy()+" until it answers", "err", err)
	} else {
		s.up.Store(true)
		s.log.Info("cluster state in Redis", "lease", s.lease, "epoch", s.epoch, "lease_ttl", cfg.LeaseTTL, "fail_open", cfg.FailOpen)
	}
	s.wg.Add(2 + pipeliners)
	go s.heartbeatLoop()
	go s.rec.run()
	for i := 0; i < pipeliners; i++ {
		go s.pipeliner()
	}
	return s, nil
}

// token is a random hex string of n bytes.
func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Client is the Redis client (for tests and diagnostics).
func (s *Store) Client() goredis.UniversalClient { return s.rdb }

// Node is this node's id.
func (s *Store) Node() string { return s.node }

// Lease is the lease the node counts legs under (node id and incarnation).
func (s *Store) Lease() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lease
}

func (s *Store) downPolicy() string {
	if s.cfg.FailOpen {
		return "let through uncounted (fail open)"
	}
	return "refused (fail closed)"
}

// Close stops the node: records still buffered are flushed (within ctx),
// pending releases are sent, and the lease is removed if no leg is held
// (legs still held, or adopted, stay until the lease expires and another
// node adopts them). The client is closed.
func (s *Store) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	s.rec.close(ctx)
	s.cancel()
	s.wg.Wait()
	var err error
	if s.up.Load() {
		_ = s.syncPending(ctx)
		s.mu.Lock()
		n := len(s.local)
		lease := s.lease
		s.mu.Unlock()
		if n == 0 {
			pipe := s.rdb.TxPipeline()
			pipe.ZRem(ctx, s.gtag+"leases", lease)
			pipe.Del(ctx, s.gtag+"lp:"+lease)
			if _, e := pipe.Exec(ctx); e != nil {
				err = fmt.Errorf("close: remove lease: %w", e)
			}
		} else {
			s.log.Warn("closing with counted legs still held: another node adopts them when the lease expires", "legs", n)
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
// and sends what waits (releases, uncounted legs). While Redis is down or
// being recovered it runs more often, to notice the change quickly.
func (s *Store) heartbeatLoop() {
	defer s.wg.Done()
	for {
		every := s.cfg.HeartbeatInterval
		if (!s.up.Load() || s.recovering.Load()) && every > 250*time.Millisecond {
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
	s.tickMu.Lock()
	defer s.tickMu.Unlock()
	if err := s.tickLocked(ctx); err != nil && failed(ctx, err) {
		s.markDown(err)
	}
}

func (s *Store) tickLocked(ctx context.Context) error {
	wasUp := s.up.Load()
	if err := s.beat(ctx); err != nil {
		return err
	}
	if !wasUp {
		if err := s.loadScripts(ctx); err != nil {
			return err
		}
		s.lineage.arm()
		s.up.Store(true)
		s.recovered = time.Now()
		s.mu.Lock()
		n := len(s.local)
		s.mu.Unlock()
		s.log.Info("Redis reachable again: counting legs", "legs_known", n)
	}
	if err := s.recover(ctx); err != nil {
		return err
	}
	if err := s.syncPending(ctx); err != nil {
		return err
	}
	if s.recovering.Load() {
		return nil
	}
	if err := s.takeBack(ctx); err != nil {
		return err
	}
	if err := s.sweep(ctx); err != nil {
		return err
	}
	return s.pruneAdopted(ctx)
}

// beat renews the lease and reads the epoch and any recovery under way.
// A lease found missing (adopted while this node was cut off, or lost with
// Redis's data) is replaced by a new one, under which the node puts its legs
// back. s.tickMu is held.
func (s *Store) beat(ctx context.Context) error {
	lease := s.Lease()
	res, err := heartbeatScript.Run(ctx, s.rdb,
		[]string{s.gtag + "leases", s.gtag + "epoch", s.gtag + "rec", s.gtag + "rec:pending"},
		lease, s.cfg.LeaseTTL.Milliseconds(), token(16)).Slice()
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if len(res) < 6 {
		return fmt.Errorf("heartbeat: unexpected reply %v", res)
	}
	had, _ := res[0].(int64)
	epoch, _ := res[1].(string)
	s.recov.epoch, _ = res[2].(string)
	left, _ := res[3].(int64)
	s.recov.left = time.Duration(left) * time.Millisecond
	s.recov.pending, _ = res[4].(int64)
	mine, _ := res[5].(int64)
	s.recov.mine = mine == 1
	var live []string
	for _, v := range res[6:] {
		if l, ok := v.(string); ok {
			live = append(live, l)
		}
	}
	switch {
	case s.epoch == "":
		s.epoch = epoch
		if s.recov.epoch == epoch && s.recov.pending > 0 {
			// Started during a recovery: nothing to put back, but counting
			// waits for the nodes that have legs to.
			s.recovering.Store(true)
			s.published = true
		}
	case epoch != s.epoch:
		s.suspectLoss("the epoch in Redis changed: Redis lost its data")
	}
	if !s.lost.Load() && !s.recovering.Load() {
		// The leases of the nodes that may hold legs, as they were before
		// any loss: after one, Redis's own list may be gone.
		s.live = live
	}
	first := !s.beaten
	s.beaten = true
	if had == 0 && !first && !s.lost.Load() {
		// (After a loss the lease is simply gone with the data: the
		// recovery puts the legs back under it.)
		return s.newLease(ctx, lease)
	}
	return nil
}

// newLease replaces a lease that is gone: the node's legs are put back
// under a new one (taken back from whoever adopted them). s.tickMu is held.
func (s *Store) newLease(ctx context.Context, old string) error {
	s.mu.Lock()
	if s.lease == old {
		s.leaseN++
		s.lease = s.inc + "." + strconv.Itoa(s.leaseN)
		s.registered = map[string]bool{}
	}
	lease := s.lease
	s.mu.Unlock()
	s.log.Warn("lease lost (adopted by another node while this one was cut off, or lost with Redis's data): counting under a new one",
		"old", old, "lease", lease)
	if _, err := heartbeatScript.Run(ctx, s.rdb,
		[]string{s.gtag + "leases", s.gtag + "epoch", s.gtag + "rec", s.gtag + "rec:pending"},
		lease, s.cfg.LeaseTTL.Milliseconds(), token(16)).Result(); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return s.putBack(ctx, false)
}
