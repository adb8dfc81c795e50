package esl

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

const goodbye = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"

type format uint8

const (
	fmtPlain format = iota
	fmtJSON
)

func (f format) String() string {
	switch f {
	case fmtJSON:
		return "json"
	}
	return "plain"
}

// subscription is mod_event_socket's event_list, event_hash and filters.
type subscription struct {
	enabled  bool
	myevents bool
	uuid     string
	format   format
	all      bool
	names    map[string]bool
	customs  map[string]bool
	filters  []filter
}

// filter is one "filter <header> <value>" of a connection.
type filter struct {
	name  string
	value string
	re    *regexp.Regexp // for /regex/ values
}

func (sub *subscription) wants(e *fsEvent) bool {
	if !sub.enabled {
		return false
	}
	if !sub.all && !sub.names[e.name] {
		return false
	}
	if len(sub.filters) > 0 && !filterMatch(sub.filters, e) {
		return false
	}
	if sub.myevents && (e.uuid == "" || e.uuid != sub.uuid) {
		return false
	}
	return true
}

// filterMatch is the filter loop of mod_event_socket's event_handler.
func filterMatch(filters []filter, e *fsEvent) bool {
	send := false
	for _, f := range filters {
		hval, ok := e.get(f.name)
		if !ok {
			continue
		}
		comp := f.value
		pos := true
		for len(comp) > 0 {
			if comp[0] == '+' {
				pos = true
			} else if comp[0] == '-' {
				pos = false
			} else if comp[0] != ' ' {
				break
			}
			comp = comp[1:]
		}
		if send && pos {
			continue
		}
		if comp == "" {
			continue
		}
		var cmp bool
		if f.re != nil {
			cmp = f.re.MatchString(hval)
		} else {
			cmp = strings.EqualFold(hval, comp)
		}
		if cmp {
			if pos {
				send = true
			} else {
				return false
			}
		}
	}
	return send
}

type outItem struct {
	raw        []byte
	ev         *fsEvent
	format     format
	closeAfter bool
}

// conn is one event socket connection: inbound (a client connected to the
// server) or outbound (the socket application connected to a controller).
type conn struct {
	s        *Server
	nc       net.Conn
	outbound bool
	uuid     string // outbound: the channel it was opened for
	log      *slog.Logger
	run      *appRun // outbound: the socket application that opened it

	mu      sync.Mutex
	queue   []outItem
	held    []outItem
	hold    int
	wake    chan struct{}
	closing bool // the final notice is queued; nothing more is written
	dead    bool
	sub     subscription
	authed  bool
	// outbound connection state
	connected   bool
	linger      bool
	lingerSecs  int // -1: until the client closes
	channelGone bool
	lingerStop  func() bool

	// guarded by s.regMu
	indexedUUID   string
	indexedGlobal bool
	bound         bool

	closeOnce sync.Once
	done      chan struct{}
	abortOnce sync.Once
	gone      chan struct{} // closed when the socket is closed
}

func (s *Server) newConn(nc net.Conn, outbound bool, uuid string) *conn {
	c := &conn{
		s:        s,
		nc:       nc,
		outbound: outbound,
		uuid:     uuid,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		gone:     make(chan struct{}),
		authed:   outbound,
	}
	c.log = s.log.With("remote", nc.RemoteAddr().String())
	if outbound {
		c.log = c.log.With("call", uuid)
		c.sub.uuid = uuid
	}
	return c
}

// start registers the connection and runs its reader and writer.
func (c *conn) start() {
	if !c.s.register(c) {
		_ = c.nc.Close()
		return
	}
	c.s.wg.Add(2)
	go c.writeLoop()
	go c.readLoop()
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// push queues an item; the caller holds c.mu.
func (c *conn) push(it outItem) {
	if c.dead || c.closing {
		return
	}
	if c.hold > 0 && it.ev != nil {
		c.held = append(c.held, it)
	} else {
		c.queue = append(c.queue, it)
	}
	if len(c.queue)+len(c.held) > c.s.cfg.MaxQueue {
		c.log.Warn("event queue full, dropping the connection", "queued", len(c.queue)+len(c.held))
		c.dead = true
		c.queue, c.held = nil, nil
		_ = c.nc.Close()
		return
	}
	if it.closeAfter {
		c.closing = true
	}
	c.signal()
}

func (c *conn) sendRaw(b []byte) {
	c.mu.Lock()
	c.push(outItem{raw: b})
	c.mu.Unlock()
}

func (c *conn) reply(text string) {
	c.sendRaw([]byte("Content-Type: command/reply\nReply-Text: " + text + "\n\n"))
}

// finishWith queues the final disconnect notice and closes after it.
func (c *conn) finishWith(locked bool) {
	var b []byte
	if c.outbound {
		b = []byte("Content-Type: text/disconnect-notice\nControlled-Session-UUID: " + c.uuid +
			"\nContent-Disposition: disconnect\nContent-Length: " + strconv.Itoa(len(goodbye)) + "\n\n" + goodbye)
	} else {
		b = []byte("Content-Type: text/disconnect-notice\nContent-Length: " + strconv.Itoa(len(goodbye)) + "\n\n" + goodbye)
	}
	if !locked {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	c.push(outItem{raw: b, closeAfter: true})
}

// offer is called under the model lock for every event the connection may
// want.
func (c *conn) offer(fe *fsEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead || c.closing || !c.sub.wants(fe) {
		return
	}
	if c.outbound && c.channelGone && fe.uuid == c.uuid {
		return
	}
	c.push(outItem{ev: fe, format: c.sub.format})
}

// channelDown is mod_event_socket noticing its channel went down: the
// linger notice (and later the goodbye), or the goodbye right away.
func (c *conn) channelDown(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.channelGone || c.dead || c.closing {
		return
	}
	c.channelGone = true
	if !c.linger {
		c.finishWith(true)
		return
	}
	c.push(outItem{raw: []byte("Content-Type: text/disconnect-notice\nControlled-Session-UUID: " + c.uuid +
		"\nContent-Disposition: linger\nChannel-Name: " + name + "\nLinger-Time: " + strconv.Itoa(c.lingerSecs) +
		"\nContent-Length: 0\n\n")})
	if c.lingerSecs >= 0 {
		t := c.s.fleet.Clock().AfterFunc(time.Duration(c.lingerSecs)*time.Second, func() { c.finishWith(false) })
		c.lingerStop = t.Stop
	}
}

// abort closes the connection at once, without any notice.
func (c *conn) abort() {
	c.mu.Lock()
	c.dead = true
	c.queue, c.held = nil, nil
	c.mu.Unlock()
	_ = c.nc.Close()
	c.abortOnce.Do(func() { close(c.gone) })
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	w := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		items := c.queue
		c.queue = nil
		dead := c.dead
		c.mu.Unlock()
		if dead {
			return
		}
		closeAfter := false
		_ = c.nc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for _, it := range items {
			var b []byte
			switch {
			case it.raw != nil:
				b = it.raw
			case it.format == fmtJSON:
				b = it.ev.wireJSON()
			default:
				b = it.ev.wirePlain()
			}
			if _, err := w.Write(b); err != nil {
				c.abort()
				return
			}
			if it.closeAfter {
				closeAfter = true
				break
			}
		}
		if err := w.Flush(); err != nil {
			c.abort()
			return
		}
		if closeAfter {
			c.mu.Lock()
			c.dead = true
			c.mu.Unlock()
			if tc, ok := c.nc.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			c.abort()
			return
		}
	}
}

func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.cleanup()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	if !c.outbound {
		c.sendRaw([]byte("Content-Type: auth/request\n\n"))
		_ = c.nc.SetReadDeadline(time.Now().Add(25 * time.Second))
	} else {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.ConnectWait))
	}
	first := true
	for {
		cmd, err := readCommand(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Debug("read failed", "err", err)
			}
			return
		}
		if first {
			first = false
			_ = c.nc.SetReadDeadline(time.Time{})
		}
		c.mu.Lock()
		closing := c.closing || c.dead
		c.mu.Unlock()
		if closing {
			// the goodbye is on its way; the writer closes the socket
			continue
		}
		if !c.handle(cmd) {
			return
		}
	}
}

// cleanup runs once the reader stops: the connection leaves the server,
// and an outbound connection stops controlling its channel.
func (c *conn) cleanup() {
	c.closeOnce.Do(func() {
		c.abort()
		close(c.done)
		c.mu.Lock()
		if c.lingerStop != nil {
			c.lingerStop()
		}
		c.mu.Unlock()
		c.s.unregister(c)
		if c.outbound {
			c.s.releaseControl(c)
		}
	})
}

// handle runs one command; false ends the connection.
func (c *conn) handle(cmd *command) bool {
	line := cmd.line
	if hasPrefixFold(line, "exit") || strings.HasPrefix(line, "...") {
		c.reply("+OK bye")
		c.finishWith(false)
		return true
	}
	if !c.authed {
		switch {
		case hasPrefixFold(line, "auth "):
			if strings.TrimRight(line[5:], "\r\n") == c.s.cfg.Password {
				c.authed = true
				c.reply("+OK accepted")
				return true
			}
			c.reply("-ERR invalid")
			c.finishWith(false)
			return true
		case hasPrefixFold(line, "userauth "):
			c.reply("-ERR invalid")
			c.finishWith(false)
			return true
		}
		c.reply("-ERR command not found")
		return true
	}
	switch {
	case hasPrefixFold(line, "filter "):
		c.cmdFilter(line[7:])
	case c.outbound && hasPrefixFold(line, "resume"):
		c.reply("+OK")
	case c.outbound && hasPrefixFold(line, "connect"):
		c.cmdConnect()
	case c.outbound && hasPrefixFold(line, "getvar"):
		name := strings.TrimSpace(strings.TrimPrefix(line[6:], " "))
		v := ""
		_ = c.s.model.Do(func(tx *callmodel.Tx) error { v, _ = tx.Var(c.uuid, name); return nil })
		c.reply(v)
	case (c.outbound && hasPrefixFold(line, "myevents")) || hasPrefixFold(line, "myevents "):
		c.cmdMyevents(line)
	case hasPrefixFold(line, "divert_events"):
		if !c.outbound {
			c.reply("-ERR not controlling a session.")
		} else if strings.Contains(strings.ToLower(line), " on") {
			c.reply("+OK events diverted")
		} else {
			c.reply("+OK events not diverted")
		}
	case hasPrefixFold(line, "sendmsg"):
		c.cmdSendmsg(cmd)
	case hasPrefixFold(line, "sendevent"):
		c.reply("+OK " + c.s.fleet.NewUUID())
	case hasPrefixFold(line, "api "):
		c.cmdAPI(strings.TrimSpace(line[4:]))
	case hasPrefixFold(line, "bgapi "):
		c.cmdBgapi(strings.TrimSpace(line[6:]), cmd.get("Job-UUID"))
	case hasPrefixFold(line, "linger"):
		if !c.outbound {
			c.reply("-ERR not controlling a session")
			break
		}
		secs := -1
		if len(line) > 7 && line[6] == ' ' {
			secs, _ = strconv.Atoi(strings.TrimSpace(line[7:]))
		}
		c.mu.Lock()
		c.linger, c.lingerSecs = true, secs
		c.mu.Unlock()
		if secs >= 0 {
			c.reply("+OK will linger " + strconv.Itoa(secs) + " seconds")
		} else {
			c.reply("+OK will linger")
		}
	case hasPrefixFold(line, "nolinger"):
		if !c.outbound {
			c.reply("-ERR not controlling a session")
			break
		}
		c.mu.Lock()
		c.linger = false
		c.mu.Unlock()
		c.reply("+OK will not linger")
	case hasPrefixFold(line, "nolog"):
		c.reply("-ERR not loging")
	case hasPrefixFold(line, "log"):
		level := strings.TrimSpace(line[3:])
		if level == "" {
			level = "debug"
		}
		c.reply("+OK log level " + level + " [7]")
	case hasPrefixFold(line, "nixevent"):
		c.cmdNixevent(line)
	case hasPrefixFold(line, "noevents"):
		c.cmdNoevents()
	case hasPrefixFold(line, "event"):
		c.cmdEvent(line)
	default:
		c.reply("-ERR command not found")
	}
	return true
}

func (c *conn) updateIndex() {
	c.mu.Lock()
	my, uuid, enabled := c.sub.myevents, c.sub.uuid, c.sub.enabled
	c.mu.Unlock()
	c.s.reindex(c, my, uuid, enabled)
}

func (c *conn) cmdEvent(line string) {
	f := strings.Fields(line)
	c.mu.Lock()
	keys := 0
	custom := false
	for i, w := range f[1:] {
		if i == 0 {
			switch strings.ToLower(w) {
			case "plain":
				c.sub.format = fmtPlain
				continue
			case "json":
				c.sub.format = fmtJSON
				continue
			case "xml":
				c.mu.Unlock()
				c.reply("-ERR xml event format is not simulated (use plain or json)")
				return
			}
		}
		if custom {
			if c.sub.customs == nil {
				c.sub.customs = map[string]bool{}
			}
			c.sub.customs[w] = true
			continue
		}
		name := strings.ToUpper(w)
		if !knownEvents[name] {
			continue
		}
		keys++
		if name == "ALL" {
			c.sub.all = true
			continue
		}
		if c.sub.names == nil {
			c.sub.names = map[string]bool{}
		}
		c.sub.names[name] = true
		if name == "CUSTOM" {
			custom = true
		}
	}
	if keys == 0 {
		c.mu.Unlock()
		c.reply("-ERR no keywords supplied")
		return
	}
	c.sub.enabled = true
	fm := c.sub.format
	// the reply goes out before any event offered from now on
	c.push(outItem{raw: []byte("Content-Type: command/reply\nReply-Text: +OK event listener enabled " + fm.String() + "\n\n")})
	c.mu.Unlock()
	c.updateIndex()
}

func (c *conn) cmdNixevent(line string) {
	f := strings.Fields(line)
	c.mu.Lock()
	keys := 0
	for _, w := range f[1:] {
		name := strings.ToUpper(w)
		if !knownEvents[name] {
			continue
		}
		keys++
		if name == "ALL" {
			c.sub.all = false
			c.sub.names = nil
			continue
		}
		if c.sub.all {
			c.sub.all = false
			c.sub.names = map[string]bool{}
			for n := range knownEvents {
				if n != "ALL" {
					c.sub.names[n] = true
				}
			}
		}
		delete(c.sub.names, name)
	}
	if keys == 0 {
		c.mu.Unlock()
		c.reply("-ERR no keywords supplied")
		return
	}
	c.sub.enabled = true
	c.mu.Unlock()
	c.reply("+OK events nixed")
	c.updateIndex()
}

func (c *conn) cmdNoevents() {
	c.mu.Lock()
	was := c.sub.enabled
	c.sub.enabled = false
	c.sub.all = false
	c.sub.names, c.sub.customs = nil, nil
	// flush_listener drops the events not yet sent
	kept := c.queue[:0]
	for _, it := range c.queue {
		if it.ev == nil {
			kept = append(kept, it)
		}
	}
	c.queue = kept
	c.mu.Unlock()
	if was {
		c.reply("+OK no longer listening for events")
	} else {
		c.reply("-ERR not listening for events")
	}
	c.updateIndex()
}

func (c *conn) cmdFilter(arg string) {
	arg = strings.TrimLeft(arg, " ")
	name, val, hasVal := strings.Cut(arg, " ")
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.EqualFold(name, "delete") && hasVal {
		n2, v2, has2 := strings.Cut(val, " ")
		if strings.EqualFold(n2, "all") {
			c.sub.filters = nil
		} else {
			out := c.sub.filters[:0]
			for _, f := range c.sub.filters {
				if strings.EqualFold(f.name, n2) && (!has2 || f.value == v2) {
					continue
				}
				out = append(out, f)
			}
			c.sub.filters = out
		}
		c.push(outItem{raw: []byte("Content-Type: command/reply\nReply-Text: +OK filter deleted. [" + n2 + "][" + v2 + "]\n\n")})
		return
	}
	if !hasVal {
		c.push(outItem{raw: []byte("Content-Type: command/reply\nReply-Text: -ERR invalid syntax\n\n")})
		return
	}
	if strings.EqualFold(name, "add") {
		name, val, _ = strings.Cut(val, " ")
	}
	f := filter{name: name, value: val}
	if body := strings.TrimLeft(val, "+- "); strings.HasPrefix(body, "/") {
		// mod_event_socket hands /regex/ values to PCRE; an invalid one
		// never matches
		re, err := regexp.Compile(strings.TrimSuffix(strings.TrimPrefix(body, "/"), "/"))
		if err != nil {
			re = regexp.MustCompile(`\A\z.`)
		}
		f.re = re
	}
	c.sub.filters = append(c.sub.filters, f)
	c.push(outItem{raw: []byte("Content-Type: command/reply\nReply-Text: +OK filter added. [" + name + "]=[" + val + "]\n\n")})
}

func (c *conn) cmdMyevents(line string) {
	f := strings.Fields(line)
	c.mu.Lock()
	if c.sub.myevents {
		c.mu.Unlock()
		c.reply("-ERR aready enabled.")
		return
	}
	if !c.outbound {
		if len(f) < 2 {
			c.mu.Unlock()
			c.reply("-ERR command not found")
			return
		}
		uuid := f[1]
		c.mu.Unlock()
		exists := false
		_ = c.s.model.Do(func(tx *callmodel.Tx) error { exists = tx.Exists(uuid); return nil })
		c.mu.Lock()
		if !exists {
			if len(f) > 2 {
				c.mu.Unlock()
				c.reply("-ERR invalid uuid")
				return
			}
		}
		c.sub.uuid = uuid
		if len(f) > 2 {
			switch strings.ToLower(f[2]) {
			case "json":
				c.sub.format = fmtJSON
			case "xml":
				c.mu.Unlock()
				c.reply("-ERR xml event format is not simulated (use plain or json)")
				return
			case "plain":
				c.sub.format = fmtPlain
			}
		}
	}
	if c.sub.names == nil {
		c.sub.names = map[string]bool{}
	}
	for _, n := range myEventsList {
		c.sub.names[n] = true
	}
	c.sub.myevents = true
	c.sub.enabled = true
	if strings.Contains(line, "xml") || strings.Contains(line, "XML") {
		c.mu.Unlock()
		c.reply("-ERR xml event format is not simulated (use plain or json)")
		return
	}
	if strings.Contains(line, "json") || strings.Contains(line, "JSON") {
		c.sub.format = fmtJSON
	}
	c.push(outItem{raw: []byte("Content-Type: command/reply\nReply-Text: +OK Events Enabled\n\n")})
	c.mu.Unlock()
	c.updateIndex()
}

// myEventsList is what myevents subscribes to.
var myEventsList = []string{
	"CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE",
	"CHANNEL_DATA", "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
	"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
	"CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
	"CHANNEL_STATE", "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK", "DETECTED_SPEECH", "DTMF",
	"NOTALK", "TALK",
}

// knownEvents are the names switch_name_event accepts.
var knownEvents = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE
	CHANNEL_CALLSTATE CHANNEL_ANSWER CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE
	CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_BRIDGE CHANNEL_UNBRIDGE
	CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK
	CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID API LOG INBOUND_CHAN OUTBOUND_CHAN
	STARTUP SHUTDOWN PUBLISH UNPUBLISH TALK NOTALK SESSION_CRASH MODULE_LOAD MODULE_UNLOAD
	DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT PRESENCE_PROBE MESSAGE_WAITING
	MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE PRIVATE_COMMAND
	HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE RELOADXML NOTIFY
	PHONE_FEATURE PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE REQUEST_PARAMS
	CHANNEL_DATA GENERAL COMMAND SESSION_HEARTBEAT CLIENT_DISCONNECTED SERVER_DISCONNECTED
	SEND_INFO RECV_INFO RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE CALL_SECURE NAT RECORD_START
	RECORD_STOP PLAYBACK_START PLAYBACK_STOP CALL_UPDATE FAILURE SOCKET_DATA MEDIA_BUG_START
	MEDIA_BUG_STOP CONFERENCE_DATA_QUERY CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT
	CALL_DETAIL DEVICE_STATE TEXT SHUTDOWN_REQUESTED ALL`) {
		knownEvents[n] = true
	}
}

// hasPrefixFold is strncasecmp(line, prefix, len(prefix)) == 0.
func hasPrefixFold(line, prefix string) bool {
	return len(line) >= len(prefix) && strings.EqualFold(line[:len(prefix)], prefix)
}
