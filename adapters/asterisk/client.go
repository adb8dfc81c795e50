package asterisk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/CyCoreSystems/ari/v5"

	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/internal/aside"
	"github.com/callctl/callctl/internal/sockq"
	"github.com/gorilla/websocket"
)

// Handler runs the calls a Client receives: the controller's Engine.
type Handler interface {
	Handle(ms controller.MediaServer, call controller.Call) error
}

// Config says how to reach one Asterisk server.
type Config struct {
	// Server is the server's name in the plan (CallInfo.Server).
	Server string
	// URL is ARI's base URL, e.g. http://127.0.0.1:8088/ari.
	URL      string
	User     string
	Password string
	// App is the Stasis application the dialplan hands calls to.
	App string
	// Context is the dialplan context Handoff continues in ("default").
	Context string
	Logger  *slog.Logger
	// HTTPClient is used for REST; a pooled client when nil.
	HTTPClient *http.Client
	// MarkFrom says whether calls from a PJSIP endpoint may carry the org
	// mark header (a trunk of another server); when nil the header is read
	// on every call. Routing decides whether to trust it either way.
	MarkFrom func(endpoint string) bool
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts
	// (100 ms and 5 s by default).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// LostAfter is how long the WebSocket may stay down before the server
	// is considered lost for good and its calls are ended (30 s).
	LostAfter time.Duration
	// RequestTimeout bounds each REST request made without a deadline (5 s).
	RequestTimeout time.Duration
	// PingInterval is how often the WebSocket is pinged; a connection that
	// answers nothing for three intervals is dropped (15 s).
	PingInterval time.Duration
	// MaxFrame is the largest WebSocket frame accepted (4 MiB); a larger one
	// drops the connection, which is then re-established and reconciled.
	MaxFrame int64
}

// FromServer builds the Config of a plan server (kind asterisk).
func FromServer(s *provision.ServerInfo, log *slog.Logger) (Config, error) {
	if s == nil || s.ARI == nil {
		return Config{}, errors.New("asterisk: server has no ARI connection")
	}
	cfg := Config{Server: s.Name, URL: s.ARI.URL, User: s.ARI.User, Password: s.ARI.Password,
		App: s.ARI.App, Context: s.ARI.Context, Logger: log}
	cfg.MarkFrom = func(ep string) bool {
		t := s.Source(ep)
		return t != nil && t.Peer != nil
	}
	return cfg, nil
}

// Client is callctl's Stasis application on one Asterisk server. It is the
// controller's MediaServer for that server, and hands each call that enters
// the application to the Handler.
type Client struct {
	cfg  Config
	log  *slog.Logger
	rest *restClient
	ws   wsURL

	handler Handler
	own     bool // the HTTP client is ours to close

	mu    sync.RWMutex
	chans map[string]*chanRef // every channel id callctl tracks
	// adopted are the channels of an earlier owner's connected calls
	// (adopt.go), apart from chans: no call of this process has them.
	adopted map[string]*adoptedCall
	calls   map[*call]struct{}
	// left are callers that left the application alive (reenter.go).
	left      map[string]leftCaller
	gen       uint64 // registration counter, for reconcile
	accepting bool
	callsWG   sync.WaitGroup // handler goroutines
	bgWG      sync.WaitGroup // short cleanup goroutines

	connected atomic.Bool
	evConn    atomic.Pointer[websocket.Conn] // the event WebSocket while it is up
	lastInfo  asteriskInfo

	nCalls, nConnects, nDisconnects, nReconciles, nBadFrames, nIgnored atomic.Uint64
}

// chanRef says whose a channel is: a call's caller (leg == nil), one of its
// legs, or a stand-in channel Asterisk put into its bridge.
type chanRef struct {
	call    *call
	leg     *leg
	standIn bool
	// xfer is the transfer callctl carries out with this stand-in channel
	// (transfer.go); call is the call of the transferer.
	xfer *ariTransfer
	gen  uint64
}

// endedForCallctl reports whether the channel's call or leg was ended
// because the server was lost, so that it may still be up there.
func (r *chanRef) endedForCallctl() bool {
	cl := r.call
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if r.leg != nil {
		return r.leg.unknown
	}
	return !r.standIn && cl.lost
}

type wsURL struct {
	url    string
	header http.Header
}

// New checks cfg and returns a Client; Run connects it.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" || cfg.App == "" {
		return nil, errors.New("asterisk: ARI URL and application are required")
	}
	if !validName(cfg.App) {
		return nil, fmt.Errorf("asterisk: application name %q: %w", cfg.App, ErrUnsafe)
	}
	if cfg.Context == "" {
		cfg.Context = "default"
	}
	if !validName(cfg.Context) {
		return nil, fmt.Errorf("asterisk: context %q: %w", cfg.Context, ErrUnsafe)
	}
	if cfg.Server == "" {
		cfg.Server = cfg.App
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ownHTTP := cfg.HTTPClient == nil
	if ownHTTP {
		cfg.HTTPClient = defaultHTTPClient()
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 5 * time.Second
		if cfg.MaxBackoff < cfg.MinBackoff {
			cfg.MaxBackoff = cfg.MinBackoff
		}
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = 30 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = 4 << 20
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("asterisk: ARI URL %q is not http(s)://host/path", cfg.URL)
	}
	c := &Client{
		cfg:   cfg,
		log:   cfg.Logger.With("server", cfg.Server),
		rest:  newREST(u.String(), cfg.User, cfg.Password, cfg.HTTPClient),
		chans: make(map[string]*chanRef),
		calls: make(map[*call]struct{}),
		own:   ownHTTP,
	}
	wu := *u
	wu.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	wu.Path += "/events"
	wu.RawQuery = url.Values{"app": {cfg.App}, "subscribeAll": {"false"}}.Encode()
	c.ws = wsURL{url: wu.String(), header: http.Header{"Authorization": {c.rest.auth}}}
	return c, nil
}

// Name is the server's plan name.
func (c *Client) Name() string { return c.cfg.Server }

// Connected reports whether the event WebSocket is up now.
func (c *Client) Connected() bool { return c.connected.Load() }

// Stats are counters of one Client, for metrics and tests.
type Stats struct {
	// Calls is the number of calls handed to the handler.
	Calls uint64
	// Active is the number of calls (and their legs) still tracked.
	Active int
	// Channels is the number of channel ids tracked (callers and legs).
	Channels int
	// Connects counts WebSocket connections established; Disconnects
	// those lost; Reconciles the reconciliations run after a reconnect.
	Connects    uint64
	Disconnects uint64
	Reconciles  uint64
	// BadFrames counts frames that were not a JSON event; Ignored the
	// events of types callctl does not handle.
	BadFrames uint64
	Ignored   uint64
}

// EventQueue is how many bytes of events Asterisk has sent on the event
// WebSocket that callctl has not read yet; ok is false while it is down (or
// the system cannot say, as for TLS).
func (c *Client) EventQueue() (n int, ok bool) {
	conn := c.evConn.Load()
	if conn == nil {
		return 0, false
	}
	return sockq.Unread(conn.UnderlyingConn())
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.RLock()
	active, chans := len(c.calls), len(c.chans)
	c.mu.RUnlock()
	return Stats{
		Calls: c.nCalls.Load(), Active: active, Channels: chans,
		Connects: c.nConnects.Load(), Disconnects: c.nDisconnects.Load(), Reconciles: c.nReconciles.Load(),
		BadFrames: c.nBadFrames.Load(), Ignored: c.nIgnored.Load(),
	}
}

// Run connects to the server and hands every call that enters the
// application to h, each in its own goroutine, until ctx is done. Then it
// takes no new call and returns once the calls it handed over have ended
// (the handler drains or stops them). It reconnects with backoff whenever
// the WebSocket drops, and reconciles its calls with the server's channels
// once it is back.
func (c *Client) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return errors.New("asterisk: Run needs a handler")
	}
	c.mu.Lock()
	if c.handler != nil {
		c.mu.Unlock()
		return errors.New("asterisk: client already running")
	}
	c.handler = h
	c.accepting = true
	c.mu.Unlock()

	connCtx, stopConn := context.WithCancel(context.Background())
	defer stopConn()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		select {
		case <-ctx.Done():
		case <-connCtx.Done():
			return
		}
		c.mu.Lock()
		c.accepting = false
		c.mu.Unlock()
		c.log.Info("ARI client stopping: no new calls; waiting for active calls to end", "active", c.Stats().Active)
		c.callsWG.Wait()
		stopConn()
	}()
	c.connLoop(connCtx)
	<-drained
	c.callsWG.Wait()
	c.bgWG.Wait()
	if c.own {
		c.cfg.HTTPClient.CloseIdleConnections()
	}
	c.log.Info("ARI client stopped")
	return nil
}

// connLoop keeps the WebSocket up until ctx is done.
func (c *Client) connLoop(ctx context.Context) {
	backoff := c.cfg.MinBackoff
	var downSince time.Time
	lost := false
	everUp := false
	attempt := 0
	for ctx.Err() == nil {
		conn, err := c.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			attempt++
			if downSince.IsZero() {
				downSince = time.Now()
			}
			wait := jitter(backoff)
			c.log.Warn("ARI connect failed; retrying", "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
			if !lost && everUp && time.Since(downSince) >= c.cfg.LostAfter {
				lost = true
				c.loseAll(fmt.Sprintf("ARI unreachable for %s", time.Since(downSince).Round(time.Millisecond)))
			}
			if !sleepCtx(ctx, wait) {
				return
			}
			backoff = min(backoff*2, c.cfg.MaxBackoff)
			continue
		}
		attempt = 0
		backoff = c.cfg.MinBackoff
		c.nConnects.Add(1)
		info := c.serverInfo(ctx)
		c.connected.Store(true)
		c.evConn.Store(conn)
		readerDone := make(chan error, 1)
		go func() { readerDone <- c.readLoop(conn) }()
		if everUp {
			gap := time.Since(downSince).Round(time.Millisecond)
			restarted := info.StartupTime != "" && c.lastInfo.StartupTime != "" && info.StartupTime != c.lastInfo.StartupTime
			if restarted {
				c.log.Warn("ARI reconnected: Asterisk restarted; reconciling calls", "down_for", gap,
					"entity_id", info.EntityID, "startup", info.StartupTime)
			} else {
				c.log.Warn("ARI reconnected: events may have been missed; reconciling calls", "down_for", gap)
			}
			c.reconcile(ctx)
		} else {
			c.log.Info("ARI connected", "app", c.cfg.App, "entity_id", info.EntityID, "version", info.Version)
			c.adoptStrays(ctx)
		}
		if info.StartupTime != "" {
			c.lastInfo = info
		}
		everUp, lost = true, false
		downSince = time.Time{}
		select {
		case err = <-readerDone:
		case <-ctx.Done():
			_ = conn.Close()
			err = <-readerDone
		}
		c.connected.Store(false)
		c.evConn.Store(nil)
		downSince = time.Now()
		if ctx.Err() != nil {
			c.log.Info("ARI WebSocket closed")
			return
		}
		c.nDisconnects.Add(1)
		c.log.Warn("ARI WebSocket lost; reconnecting", "err", err)
	}
}

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

type asteriskInfo struct {
	EntityID    string
	Version     string
	StartupTime string
}

// serverInfo reads who the server is, to tell a restart from a network
// blip; failures only cost the log line.
func (c *Client) serverInfo(ctx context.Context) asteriskInfo {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	var r struct {
		System struct {
			EntityID string `json:"entity_id"`
			Version  string `json:"version"`
		} `json:"system"`
		Status struct {
			StartupTime string `json:"startup_time"`
		} `json:"status"`
	}
	if err := c.rest.do(ctx, http.MethodGet, "/asterisk/info", nil, nil, &r); err != nil {
		c.log.Warn("ARI: reading server info failed", "err", err)
		return asteriskInfo{}
	}
	return asteriskInfo{EntityID: r.System.EntityID, Version: r.System.Version, StartupTime: r.Status.StartupTime}
}

// --- channel registry -------------------------------------------------------

func (c *Client) lookup(id string) (ref *chanRef, half2 bool) {
	c.mu.RLock()
	ref = c.chans[id]
	if ref == nil && strings.HasSuffix(id, ";2") {
		if r := c.chans[id[:len(id)-2]]; r != nil && r.leg != nil {
			ref, half2 = r, true
		}
	}
	c.mu.RUnlock()
	return ref, half2
}

func (c *Client) register(id string, ref *chanRef) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.chans[id]; dup {
		return false
	}
	c.gen++
	ref.gen = c.gen
	c.chans[id] = ref
	return true
}

func (c *Client) unregister(id string, ref *chanRef) {
	c.mu.Lock()
	if c.chans[id] == ref {
		delete(c.chans, id)
	}
	c.mu.Unlock()
}

// --- events -------------------------------------------------------------------

// handleFrame decodes and dispatches one frame; at is when it was read.
// It runs on the reader goroutine, so events are handled in the order
// Asterisk sent them; it never blocks on the network.
func (c *Client) handleFrame(data []byte, at time.Time) {
	e, err := decodeEvent(data)
	if err != nil {
		c.nBadFrames.Add(1)
		c.log.Warn("ARI: ignoring a frame that is not an event", "err", err, "size", len(data), "head", head(data))
		return
	}
	// The event names are ari/v5's (generated from Asterisk's ARI model);
	// the frames themselves are decoded by callctl (events.go).
	switch e.Type {
	case ari.Events.StasisStart:
		c.onStasisStart(&e, at)
	case ari.Events.StasisEnd:
		// Channels that entered Stasis from the dialplan get no
		// ChannelDestroyed after StasisEnd (subscribeAll=false, trace e1):
		// for them StasisEnd is the end.
		switch ref, _ := c.lookup(e.Channel.ID); {
		case ref == nil:
			c.adoptedGone(e.Channel.ID)
		case ref.leg != nil:
		case ref.xfer != nil && ref.xfer.ended(causeUnknown):
		case ref.xfer != nil && !ref.standIn:
		case ref.standIn:
			ref.call.standInGone(e.Channel.ID)
		default:
			ref.call.leftStasis(at)
		}
	case ari.Events.ChannelHangupRequest:
		// A soft request (cause 32 after DELETE) is a flag, not a cause.
		if ref, half2 := c.lookup(e.Channel.ID); ref != nil && ref.leg == nil && !ref.standIn && ref.xfer == nil && !half2 {
			ref.call.noteHangupRequest(e.HasCause && !e.Soft, e.Cause)
		}
	case ari.Events.ChannelDestroyed:
		ref, half2 := c.lookup(e.Channel.ID)
		switch {
		case ref == nil:
			c.adoptedGone(e.Channel.ID)
		case ref.leg != nil:
			if ref.leg.destroyed(half2, e.Cause, at) {
				stepDecided()
			}
			if !half2 {
				ref.call.legGone(ref.leg)
			}
		case ref.xfer != nil && ref.xfer.ended(e.Cause):
		case ref.xfer != nil && !ref.standIn:
		case ref.standIn:
			ref.call.standInGone(e.Channel.ID)
		default:
			cause := -1
			if e.HasCause {
				cause = e.Cause
			}
			ref.call.callerGone(cause, at)
		}
	case ari.Events.Dial:
		if ref, half2 := c.lookup(e.Peer.ID); ref != nil && ref.leg != nil && !half2 && e.DialStatus != "" {
			ref.leg.dialStatus(e.DialStatus)
		}
	case ari.Events.ChannelStateChange, ari.Events.ChannelEnteredBridge, ari.Events.ChannelLeftBridge, ari.Events.ChannelVarset, ari.Events.ChannelDialplan,
		ari.Events.ChannelCallerID, ari.Events.ChannelConnectedLine, ari.Events.BridgeDestroyed, ari.Events.BridgeCreated, ari.Events.ChannelCreated:
		// Known and not needed to drive calls.
	case ari.Events.ApplicationReplaced:
		c.log.Error("ARI: another client took over application " + c.cfg.App +
			"; two callctl nodes must not share an application name")
	case ari.Events.BridgeBlindTransfer:
		c.log.Info("ARI: transfer in a bridge", "type", e.Type, "bridge", e.BridgeID)
	case ari.Events.BridgeAttendedTransfer:
		c.log.Info("ARI: transfer in a bridge", "type", e.Type, "first_leg", e.FirstLeg, "second_leg", e.SecondLeg)
		// The calls of the two dialogs are linked (Asterisk put a Local
		// pair in the transferer's places): the second carries the first
		// one's party now.
		a, _ := c.lookup(e.FirstLeg)
		b, _ := c.lookup(e.SecondLeg)
		if a != nil && b != nil && !a.standIn && !b.standIn && a.xfer == nil && b.xfer == nil && a.call != b.call {
			b.call.attendedFrom(a.call, a.leg)
		}
	case eventChannelTransfer:
		c.onChannelTransfer(&e)
	default:
		// Event types newer than callctl (CallBroadcast, ...) are skipped,
		// never fatal.
		c.nIgnored.Add(1)
		c.log.Debug("ARI: ignoring event type", "type", e.Type)
	}
}

// stepDecided lets the call whose attempt just ended or answered take its
// next step now: the reader goroutine may have a burst of frames to go
// through, and the woken goroutine would otherwise wait for it to block or
// be preempted (up to 10 ms on a busy machine; under heavy load hunts then
// outlast their callers' patience).
func stepDecided() { runtime.Gosched() }

func head(b []byte) string {
	const n = 80
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// legMarker is the first application argument of every leg callctl
// originates: a StasisStart carrying it is never a new call.
const legMarker = "callctl-leg"

func (c *Client) onStasisStart(e *event, at time.Time) {
	id := e.Channel.ID
	if id == "" {
		c.nBadFrames.Add(1)
		c.log.Warn("ARI: StasisStart without a channel id")
		return
	}
	if ref, half2 := c.lookup(id); ref != nil {
		switch {
		case ref.xfer != nil:
			// A transfer's stand-in, created in the application.
		case ref.leg != nil:
			if !half2 && ref.leg.answered(at, e.Channel.Name) {
				stepDecided()
			}
		case !ref.standIn && !half2 && ref.call.leftApp():
			// A caller back before its call let go of it (reenter.go).
			c.reenter(e, at, ref.call)
		}
		return
	}
	if rid := e.ReplaceChannel.ID; rid != "" {
		// A transfer put this channel into a bridge in place of rid.
		if ref, _ := c.lookup(rid); ref != nil && !ref.standIn {
			ref.call.adoptStandIn(id, rid)
			return
		}
	}
	if len(e.Args) > 0 && e.Args[0] == legMarker {
		// A leg of a call this process no longer knows (it restarted, or
		// the call ended while the leg was being answered): nobody will
		// bridge it, so it must not ring on.
		c.log.Warn("ARI: hanging up an orphan leg", "call", id)
		c.background(func(ctx context.Context) { _ = c.deleteChannel(ctx, id, causeNormal) })
		return
	}
	xfer := c.xferFor(id)
	if xfer != nil && xfer.attended {
		xfer.link(id)
		return
	}
	if xfer == nil {
		if prev := c.takeLeft(id, at); prev != nil {
			c.reenter(e, at, prev)
			return
		}
	}
	c.newCall(e, at, xfer, nil)
}

// background runs f in a tracked goroutine with a request timeout.
func (c *Client) background(f func(ctx context.Context)) {
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
		defer cancel()
		f(ctx)
	}()
}

// newCall hands a channel that started in the application to the handler;
// prev is the call whose caller it was before it came back (reenter.go).
func (c *Client) newCall(e *event, at time.Time, xfer *ariTransfer, prev *call) {
	ch := &e.Channel
	cl := newCall(c, ch, e.Args, at)
	cl.xfer = xfer
	if prev != nil {
		cl.prev = prev
		cl.ivrOf(prev)
	}
	ref := &chanRef{call: cl}
	c.mu.Lock()
	if !c.accepting {
		c.mu.Unlock()
		cl.logger().Warn("refusing call: shutting down", "caller", ch.CallerNumber)
		c.background(func(ctx context.Context) { _ = c.deleteChannel(ctx, ch.ID, causeOutOfOrder) })
		return
	}
	if r, dup := c.chans[ch.ID]; dup && (prev == nil || r.call != prev) {
		c.mu.Unlock()
		return
	}
	c.gen++
	ref.gen = c.gen
	c.chans[ch.ID] = ref
	c.calls[cl] = struct{}{}
	c.callsWG.Add(1)
	cl.handled.Add(1)
	c.mu.Unlock()
	c.nCalls.Add(1)
	go c.runCall(cl)
}

// runCall runs the handler of cl. Its frame stays on the stack for the
// whole call, under the handler's: what it does besides is in calls of
// their own, so that it stays small.
func (c *Client) runCall(cl *call) {
	defer c.callsWG.Done()
	defer cl.finish()
	defer cl.handled.Done()
	// Aside: this goroutine lasts as long as the call (see package aside).
	aside.Do(cl.prepare)
	if err := c.handler.Handle(c, cl); err != nil {
		cl.handlerFailed(err)
	}
}

// prepare reads what the handler needs to know of the caller's channel
// beyond its StasisStart.
func (cl *call) prepare() {
	cl.readMark()
	switch {
	case cl.xfer != nil:
		cl.transferredFrom(cl.xfer.from, cl.xfer.byLeg, cl.xfer.byName)
	case cl.prev != nil:
		// The engine takes the channel on again once the call before
		// let go of it (and of what it counted).
		cl.prev.handled.Wait()
		cl.prev = nil
	default:
		cl.readTransfer()
	}
}

func (cl *call) handlerFailed(err error) {
	cl.logger().Warn("call handler returned an error", "err", err)
}

// findParty finds the call whose caller or leg channel is named name.
func (c *Client) findParty(name string) (*call, *leg) {
	c.mu.RLock()
	calls := make([]*call, 0, len(c.calls))
	for cl := range c.calls {
		calls = append(calls, cl)
	}
	c.mu.RUnlock()
	for _, cl := range calls {
		cl.mu.Lock()
		if cl.name == name {
			cl.mu.Unlock()
			return cl, nil
		}
		for _, l := range cl.legs {
			if l.name == name {
				cl.mu.Unlock()
				return cl, l
			}
		}
		cl.mu.Unlock()
	}
	return nil, nil
}

// --- reconcile and loss ---------------------------------------------------------

// reconcile compares what callctl tracks with the channels the server has
// after events may have been missed: callers and legs that are gone are
// ended as if their events had arrived, legs that were answered meanwhile
// are connected.
func (c *Client) reconcile(ctx context.Context) {
	c.nReconciles.Add(1)
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()
	var chans []struct {
		ID           string `json:"id"`
		State        string `json:"state"`
		Creationtime string `json:"creationtime"`
	}
	var err error
	for try := 0; try < 5; try++ {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		err = c.rest.do(rctx, http.MethodGet, "/channels", nil, nil, &chans)
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
		if !sleepCtx(ctx, c.cfg.MinBackoff<<try) {
			break
		}
	}
	if err != nil {
		// The next reconnect tries again; until then the calls' own
		// timeouts bound what waits on missed events.
		c.log.Error("ARI reconcile failed", "err", err)
		return
	}
	live := make(map[string]string, len(chans))
	for _, ch := range chans {
		live[ch.ID] = ch.State
	}
	type item struct {
		id  string
		ref *chanRef
	}
	var items []item
	c.mu.RLock()
	for id, ref := range c.chans {
		if ref.gen <= gen {
			items = append(items, item{id, ref})
		}
	}
	c.mu.RUnlock()
	now := time.Now()
	gone, answered := 0, 0
	for _, it := range items {
		state, up := live[it.id]
		if up && it.ref.endedForCallctl() {
			// Ended while the server was lost, and still up there.
			id := it.id
			c.log.Warn("ARI: hanging up a channel of a call ended while the server was lost", "call", id)
			c.background(func(ctx context.Context) {
				if err := c.deleteChannel(ctx, id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
					c.log.Warn("hanging up a lost call's channel failed", "call", id, "err", err)
				}
			})
			continue
		}
		switch {
		case it.ref.xfer != nil && !up && it.ref.xfer.ended(causeUnknown):
		case it.ref.xfer != nil && !it.ref.standIn:
		case it.ref.leg != nil:
			l := it.ref.leg
			if !up {
				gone++
				l.lost(now, true)
				continue
			}
			if _, up2 := live[it.id+";2"]; !up2 && l.local {
				l.destroyed(true, causeUnknown, now)
			}
			if state == "Up" && l.answered(now, "") {
				answered++
			}
		case it.ref.standIn:
			if !up {
				it.ref.call.standInGone(it.id)
			}
		default:
			if !up {
				gone++
				it.ref.call.logger().Warn("caller's channel vanished while events were missed")
				it.ref.call.callerGone(-1, now)
			}
		}
	}
	created := make(map[string]string, len(chans))
	for _, ch := range chans {
		created[ch.ID] = ch.Creationtime
	}
	orphans := c.hangupOrphans(ctx, created)
	c.log.Info("ARI reconciled", "tracked", len(items), "live_on_server", len(chans), "gone", gone,
		"answered_meanwhile", answered, "orphans", orphans)
}

// hangupOrphans hangs up the channels in callctl's application that no call
// of this process tracks any more: calls ended while the server was
// unreachable (lost for good) leave them behind. Only channels created
// before the reconnect (by the server's own clock, with a margin) qualify:
// a newer one may be a call whose StasisStart is still on its way.
func (c *Client) hangupOrphans(ctx context.Context, created map[string]string) int {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	var ping struct {
		Timestamp string `json:"timestamp"`
	}
	var app struct {
		ChannelIDs []string `json:"channel_ids"`
		BridgeIDs  []string `json:"bridge_ids"`
	}
	if err := c.rest.do(rctx, http.MethodGet, "/asterisk/ping", nil, nil, &ping); err != nil {
		c.log.Warn("ARI: no server clock; orphan channels not checked", "err", err)
		return 0
	}
	now, err := time.Parse(ariTime, ping.Timestamp)
	if err != nil {
		c.log.Warn("ARI: unreadable server clock; orphan channels not checked", "timestamp", ping.Timestamp)
		return 0
	}
	if err := c.rest.do(rctx, http.MethodGet, "/applications/"+seg(c.cfg.App), nil, nil, &app); err != nil {
		c.log.Warn("ARI: application not readable; orphan channels not checked", "err", err)
		return 0
	}
	cutoff := now.Add(-2 * time.Second)
	n := 0
	for _, id := range app.ChannelIDs {
		if strings.HasSuffix(id, ";2") {
			// Goes with its ;1 half.
			continue
		}
		ct, live := created[id]
		if !live {
			continue
		}
		if t, err := time.Parse(ariTime, ct); err != nil || !t.Before(cutoff) {
			continue
		}
		if ref, _ := c.lookup(id); ref != nil {
			continue
		}
		n++
		c.log.Warn("ARI: hanging up a channel no call owns any more", "call", id, "created", ct)
		c.background(func(ctx context.Context) {
			if err := c.deleteChannel(ctx, id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
				c.log.Warn("hanging up an orphan channel failed", "call", id, "err", err)
			}
		})
	}
	if len(app.BridgeIDs) == 0 {
		return n
	}
	var bridges []struct {
		ID           string `json:"id"`
		Creationtime string `json:"creationtime"`
	}
	if err := c.rest.do(rctx, http.MethodGet, "/bridges", nil, nil, &bridges); err != nil {
		c.log.Warn("ARI: bridges not readable; orphan bridges not checked", "err", err)
		return n
	}
	bridgeCreated := make(map[string]string, len(bridges))
	for _, b := range bridges {
		bridgeCreated[b.ID] = b.Creationtime
	}
	owned := c.trackedBridges()
	for _, id := range app.BridgeIDs {
		ct, ok := bridgeCreated[id]
		if !ok || owned[id] {
			continue
		}
		if t, err := time.Parse(ariTime, ct); err != nil || !t.Before(cutoff) {
			continue
		}
		n++
		c.log.Warn("ARI: deleting a bridge no call owns any more", "bridge", id, "created", ct)
		c.background(func(ctx context.Context) {
			if err := c.deleteBridge(ctx, id); err != nil && statusOf(err) != http.StatusNotFound {
				c.log.Warn("deleting an orphan bridge failed", "bridge", id, "err", err)
			}
		})
	}
	return n
}

// trackedBridges lists the bridges of the calls callctl tracks.
func (c *Client) trackedBridges() map[string]bool {
	c.mu.RLock()
	calls := make([]*call, 0, len(c.calls))
	for cl := range c.calls {
		calls = append(calls, cl)
	}
	c.mu.RUnlock()
	out := make(map[string]bool, len(calls))
	for _, cl := range calls {
		cl.mu.Lock()
		if cl.bridge != "" {
			out[cl.bridge] = true
		}
		cl.mu.Unlock()
	}
	return out
}

// loseAll ends every call: the server has been unreachable too long for
// callctl to control or even see them.
func (c *Client) loseAll(why string) {
	c.mu.RLock()
	calls := make([]*call, 0, len(c.calls))
	for cl := range c.calls {
		calls = append(calls, cl)
	}
	c.mu.RUnlock()
	c.log.Error("ARI server lost: ending its calls", "reason", why, "calls", len(calls))
	now := time.Now()
	for _, cl := range calls {
		cl.lose(now)
	}
}

// --- MediaServer ------------------------------------------------------------------

// Registered says whether endpoint can ring now. PJSIP endpoints without a
// trunk part are asked about (online = registered); Local channels and
// trunks always can.
func (c *Client) Registered(ctx context.Context, ep string) (bool, error) {
	e, err := parseEndpoint(ep)
	if err != nil {
		return false, fmt.Errorf("registered %s: %w", ep, err)
	}
	if e.tech != "PJSIP" || e.at != "" {
		return true, nil
	}
	var r struct {
		State string `json:"state"`
	}
	err = c.rest.do(ctx, http.MethodGet, "/endpoints/PJSIP/"+seg(e.resource), nil, nil, &r)
	switch {
	case statusOf(err) == http.StatusNotFound:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("registered %s: %w", ep, err)
	}
	switch r.State {
	case "online":
		return true, nil
	case "offline":
		return false, nil
	}
	// "unknown": Asterisk cannot tell (no qualify); ringing it lets the
	// attempt itself say.
	return true, nil
}

// LiveChannels lists the ids of the channels up on the server.
func (c *Client) LiveChannels(ctx context.Context) ([]string, error) {
	var chans []struct {
		ID string `json:"id"`
	}
	if err := c.rest.do(ctx, http.MethodGet, "/channels", nil, nil, &chans); err != nil {
		return nil, fmt.Errorf("live channels on %s: %w", c.cfg.Server, err)
	}
	ids := make([]string, 0, len(chans))
	for _, ch := range chans {
		ids = append(ids, ch.ID)
	}
	return ids, nil
}

// deleteChannel hangs a channel up with a Q.850 cause.
func (c *Client) deleteChannel(ctx context.Context, id string, cause int) error {
	q := url.Values{}
	if cause > 0 {
		q.Set("reason_code", fmt.Sprint(cause))
	} else {
		q.Set("reason", "normal")
	}
	return c.rest.do(ctx, http.MethodDelete, "/channels/"+seg(id), q, nil, nil)
}

func (c *Client) deleteBridge(ctx context.Context, id string) error {
	return c.rest.do(ctx, http.MethodDelete, "/bridges/"+seg(id), nil, nil, nil)
}

var _ controller.MediaServer = (*Client)(nil)
