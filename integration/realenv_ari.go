package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// ariSide is the suite's own ARI application on one Asterisk. A test call is
// an originate of Local/<dialed>@<context> with the caller's number into this
// application: the ;2 half runs the context, whose Stasis() hands it to
// callctl's application as a call from a phone; the ;1 half is the caller.
// The application subscribes to every channel and bridge (eventSource
// channel: and bridge:), so the channel log sees every channel the server
// creates, callctl's legs included. Not subscribeAll: that subscribes to
// device states too, and closing such a WebSocket while device states are
// delivered deadlocks Asterisk's ARI (asterisk/asterisk#2170: every later
// WebSocket hangs until Asterisk restarts; integration/traces/asterisk/k-*).
//
// It is written from the recorded transcripts (traces/asterisk) and shares
// no code with callctl's adapter.
type ariSide struct {
	server string
	rs     *RealServer
	app    string
	log    *slog.Logger
	base   string // http(s)://host:port/ari
	auth   string // Authorization header value
	http   *http.Client
	ws     *websocket.Conn

	chans *chanLog
	mu    sync.Mutex
	calls map[string]*RealCall // by the ;1 channel id
	// halves remembers, per call, which halves were destroyed and the ;2
	// half's cause, the one callctl gave the caller.
	halves map[string]*localHalves
	// syncs waits for the BridgeDestroyed of Sync's bridges.
	syncs map[string]chan struct{}
	// syncMisses counts syncs whose bridge was never reported.
	syncMisses int

	done     chan struct{}
	doneOnce sync.Once
	wg       sync.WaitGroup
}

type localHalves struct {
	one, two  bool
	cause     int
	causeText string
}

// ariEvent is the part of an ARI event the suite reads.
type ariEvent struct {
	Type        string      `json:"type"`
	Application string      `json:"application"`
	Channel     *ariChannel `json:"channel"`
	Bridge      *struct {
		ID string `json:"id"`
	} `json:"bridge"`
	Cause     int    `json:"cause"`
	CauseText string `json:"cause_txt"`
}

type ariChannel struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	State  string `json:"state"`
	Caller struct {
		Number string `json:"number"`
	} `json:"caller"`
}

// ariClient is an ariSide that only makes REST requests (no events).
func ariClient(rs *RealServer) *ariSide {
	return &ariSide{rs: rs, base: strings.TrimRight(rs.URL, "/"),
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(rs.User+":"+rs.Password)),
		http: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
}

func dialARI(ctx context.Context, server string, rs *RealServer, app string, log *slog.Logger) (*ariSide, error) {
	u, err := url.Parse(rs.URL)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rs.Var, err)
	}
	c := ariClient(rs)
	c.server, c.app, c.log = server, app, log.With("side", "asterisk", "server", server)
	c.chans, c.calls, c.halves = newChanLog(), map[string]*RealCall{}, map[string]*localHalves{}
	c.syncs, c.done = map[string]chan struct{}{}, make(chan struct{})
	ws := *u
	ws.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
	ws.Path = strings.TrimRight(u.Path, "/") + "/events"
	ws.RawQuery = url.Values{"app": {app}, "subscribeAll": {"false"}}.Encode()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.DialContext(ctx, ws.String(), http.Header{"Authorization": {c.auth}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		status := ""
		if resp != nil {
			status = " (" + resp.Status + ")"
		}
		return nil, fmt.Errorf("%s: ARI events for application %s%s: %w", rs.Var, app, status, err)
	}
	conn.SetReadLimit(4 << 20)
	c.ws = conn
	c.wg.Add(1)
	go c.readLoop()
	sub := "/applications/" + url.PathEscape(app) + "/subscription?" + url.Values{"eventSource": {"channel:,bridge:"}}.Encode()
	if err := c.request(ctx, http.MethodPost, sub, nil); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: subscribe %s to every channel and bridge: %w", rs.Var, app, err)
	}
	return c, nil
}

func (c *ariSide) readLoop() {
	defer c.wg.Done()
	defer c.stop()
	for {
		_, msg, err := c.ws.ReadMessage()
		if err != nil {
			select {
			case <-c.done:
			default:
				c.log.Warn("ARI events ended", "err", err)
				c.endAll("suite lost the ARI events: " + err.Error())
			}
			return
		}
		var ev ariEvent
		if err := json.Unmarshal(msg, &ev); err != nil {
			c.log.Warn("undecodable ARI event", "err", err)
			continue
		}
		c.event(&ev)
	}
}

func (c *ariSide) event(ev *ariEvent) {
	if ev.Type == "BridgeDestroyed" && ev.Bridge != nil {
		c.mu.Lock()
		w := c.syncs[ev.Bridge.ID]
		delete(c.syncs, ev.Bridge.ID)
		c.mu.Unlock()
		if w != nil {
			close(w)
		}
		return
	}
	if ev.Channel == nil || ev.Channel.ID == "" {
		return
	}
	id := ev.Channel.ID
	now := time.Now()
	c.chans.mu.Lock()
	ch := c.chans.touch(id, ev.Channel.Name, ev.Channel.Caller.Number, now)
	if ev.Channel.State == "Up" && ch.Answered.IsZero() {
		ch.Answered = now
	}
	if ev.Type == "ChannelDestroyed" {
		ch.Ended, ch.Cause = now, ev.Cause
	}
	c.chans.mu.Unlock()

	one, isTwo := strings.CutSuffix(id, ";2")
	if !isTwo {
		one = id
	}
	c.mu.Lock()
	call := c.calls[one]
	var ended *localHalves
	if call != nil && ev.Type == "ChannelDestroyed" {
		h := c.halves[one]
		if isTwo {
			h.two, h.cause, h.causeText = true, ev.Cause, ev.CauseText
		} else {
			h.one = true
		}
		if h.one && h.two {
			ended = h
			delete(c.calls, one)
			delete(c.halves, one)
		}
	}
	c.mu.Unlock()
	if call == nil {
		return
	}
	// The caller is connected when its ;1 half is up (it then enters this
	// application).
	if !isTwo && (ev.Channel.State == "Up" || (ev.Type == "StasisStart" && ev.Application == c.app)) {
		call.markAnswered()
	}
	if ended != nil {
		call.markEnded(ended.cause, ended.causeText)
	}
}

// Place originates the test call into the suite's application.
func (c *ariSide) Place(ctx context.Context, from, dialed string) (*RealCall, error) {
	if err := checkDigits(from, dialed); err != nil {
		return nil, err
	}
	return c.placeIn(ctx, from, dialed, c.rs.Context)
}

// placeIn originates a call from from to dialed in a context of the lab's
// dialplan (Place: the one that hands calls to callctl).
func (c *ariSide) placeIn(ctx context.Context, from, dialed, dpContext string) (*RealCall, error) {
	id := "it-" + newID()
	call := newRealCall(c.server, from, dialed, id)
	call.hangup = func(ctx context.Context) error {
		err := c.request(ctx, http.MethodDelete, "/channels/"+url.PathEscape(id), nil)
		if err != nil && !(errors.Is(err, errNotFound) && call.Ended()) {
			return err
		}
		return nil
	}
	c.mu.Lock()
	c.calls[id] = call
	c.halves[id] = &localHalves{}
	c.mu.Unlock()
	q := url.Values{
		"endpoint":  {"Local/" + dialed + "@" + dpContext},
		"app":       {c.app},
		"callerId":  {from},
		"channelId": {id},
		// The hunts of the suite ring for a few seconds per member; the
		// caller waits longer than any of them.
		"timeout": {"120"},
	}
	if err := c.request(ctx, http.MethodPost, "/channels?"+q.Encode(), nil); err != nil {
		c.mu.Lock()
		delete(c.calls, id)
		delete(c.halves, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: call %s -> %s: %w", c.rs.Var, from, dialed, err)
	}
	c.log.Debug("test call placed", "call", id, "from", from, "dialed", dialed)
	return call, nil
}

// Sync creates and destroys a bridge and waits for its BridgeDestroyed: the
// application (subscribed to everything) receives the server's events in
// order, so everything raised before has been read. A server that does not
// report the bridge within 5 s is given those 5 s instead.
func (c *ariSide) Sync(ctx context.Context) error {
	id := "it-sync-" + newID()
	w := make(chan struct{})
	c.mu.Lock()
	c.syncs[id] = w
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.syncs, id)
		c.mu.Unlock()
	}()
	if err := c.request(ctx, http.MethodPost, "/bridges?"+url.Values{"type": {"mixing"}, "bridgeId": {id}}.Encode(), nil); err != nil {
		return err
	}
	if err := c.request(ctx, http.MethodDelete, "/bridges/"+url.PathEscape(id), nil); err != nil {
		return err
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-w:
	case <-t.C:
		c.log.Warn("no BridgeDestroyed for the sync bridge within 5 s", "bridge", id)
		c.mu.Lock()
		c.syncMisses++
		c.mu.Unlock()
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return errors.New("ARI events ended")
	}
	return nil
}

var errNotFound = errors.New("not found")

func (c *ariSide) request(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.auth)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ARI %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("ARI %s %s: %w: %s", method, path, errNotFound, strings.TrimSpace(string(body)))
	case resp.StatusCode >= 300:
		return fmt.Errorf("ARI %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func (c *ariSide) endAll(reason string) {
	c.mu.Lock()
	calls := make([]*RealCall, 0, len(c.calls))
	for _, call := range c.calls {
		calls = append(calls, call)
	}
	c.mu.Unlock()
	for _, call := range calls {
		call.markEnded(-1, reason)
	}
}

func (c *ariSide) stop() { c.doneOnce.Do(func() { close(c.done) }) }

func (c *ariSide) Channels() []Channel { return c.chans.list() }

// Kill hangs a channel up from the server.
func (c *ariSide) Kill(ctx context.Context, id string) error {
	if !validChannelID(id) {
		return fmt.Errorf("channel id %q", id)
	}
	return c.request(ctx, http.MethodDelete, "/channels/"+url.PathEscape(id), nil)
}

// Redirect sends a channel on to dest in the dialplan's context.
func (c *ariSide) Redirect(ctx context.Context, id, dest, context string) error {
	if !validChannelID(id) {
		return fmt.Errorf("channel id %q", id)
	}
	q := url.Values{"context": {context}, "extension": {dest}, "priority": {"1"}}
	return c.request(ctx, http.MethodPost, "/channels/"+url.PathEscape(id)+"/continue?"+q.Encode(), nil)
}

// Close says goodbye on the WebSocket and waits for its reader.
func (c *ariSide) Close() {
	c.stop()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(time.Second))
	_ = c.ws.Close()
	c.wg.Wait()
	c.http.CloseIdleConnections()
	c.endAll("closed by the suite")
}
