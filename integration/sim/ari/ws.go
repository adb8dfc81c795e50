package ari

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// maxQueued bounds the frames waiting for a slow WebSocket reader; past it
// the session is closed rather than letting memory grow without end.
const maxQueued = 1 << 20

const writeTimeout = 10 * time.Second

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 16384,
	// Asterisk does not check the Origin of ARI WebSocket clients.
	CheckOrigin: func(*http.Request) bool { return true },
}

// wsSession is one /ari/events WebSocket. Events are queued by the engine
// (never blocking it) and written by the session's writer goroutine.
type wsSession struct {
	srv    *Server
	conn   *websocket.Conn
	apps   []string
	remote string

	mu     sync.Mutex
	queue  []wsFrame
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

// wsFrame is a frame waiting to be written: a text message or a control
// frame answering the peer.
type wsFrame struct {
	op   byte
	data []byte
}

const (
	opText  = 0x1
	opClose = 0x8
	opPong  = 0xA
)

func (s *wsSession) enqueue(frame []byte) { s.push(wsFrame{op: opText, data: frame}) }

func (s *wsSession) push(f wsFrame) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= maxQueued {
		s.mu.Unlock()
		s.srv.log.Warn("ari websocket reader too slow, closing it", "remote", s.remote)
		s.close()
		return
	}
	s.queue = append(s.queue, f)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close ends the session abruptly (no close frame): what a crashed peer or
// a dropped TCP connection looks like.
func (s *wsSession) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.queue = nil
	conn := s.conn
	s.mu.Unlock()
	close(s.done)
	if conn != nil {
		_ = conn.NetConn().Close()
	}
}

// appendFrameHeader writes an unmasked (server to client) frame header.
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126)
		return binary.BigEndian.AppendUint16(b, uint16(n))
	}
	b = append(b, 127)
	return binary.BigEndian.AppendUint64(b, uint64(n))
}

// writer frames the queued messages itself into one buffer and writes a
// whole batch with one system call (gorilla writes each message with its
// own). gorilla still reads; its ping and close handlers queue their
// answers here, so nothing else ever writes to the connection.
func (s *wsSession) writer() {
	nc := s.conn.NetConn()
	bw := bufio.NewWriterSize(nc, 64<<10)
	var batch []wsFrame
	var hdr []byte
	for {
		select {
		case <-s.done:
			return
		case <-s.wake:
		}
		for {
			s.mu.Lock()
			batch, s.queue = s.queue, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			_ = nc.SetWriteDeadline(time.Now().Add(writeTimeout))
			closing := false
			for i, f := range batch {
				hdr = appendFrameHeader(hdr[:0], f.op, len(f.data))
				_, _ = bw.Write(hdr)
				_, _ = bw.Write(f.data)
				batch[i] = wsFrame{}
				closing = closing || f.op == opClose
			}
			if err := bw.Flush(); err != nil {
				s.srv.log.Debug("ari websocket write failed", "remote", s.remote, "err", err)
				s.close()
				return
			}
			if closing {
				s.close()
				return
			}
		}
	}
}

// answerControls routes gorilla's answers to pings and close frames
// through the writer.
func (s *wsSession) answerControls() {
	s.conn.SetPingHandler(func(data string) error {
		s.push(wsFrame{op: opPong, data: []byte(data)})
		return nil
	})
	s.conn.SetCloseHandler(func(code int, _ string) error {
		payload := []byte{}
		if code != websocket.CloseNoStatusReceived {
			payload = binary.BigEndian.AppendUint16(payload, uint16(code))
		}
		s.push(wsFrame{op: opClose, data: payload})
		return nil
	})
}

// reader consumes what the client sends (Asterisk 22 accepts REST requests
// over the socket; the simulator ignores them) until the socket closes.
func (s *wsSession) reader() {
	for {
		_, _, err := s.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			// The peer closed: let the writer send the close frame back
			// (it then closes the connection), but not for ever.
			t := time.NewTimer(2 * time.Second)
			select {
			case <-s.done:
			case <-t.C:
			}
			t.Stop()
		}
		s.close()
		return
	}
}

// handleEvents serves GET /ari/events.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, q params) {
	appParam := q.get("app")
	var apps []string
	for _, a := range strings.Split(appParam, ",") {
		if a = strings.TrimSpace(a); a != "" {
			apps = append(apps, a)
		}
	}
	if len(apps) == 0 {
		writeError(w, errf(400, "Missing param 'app'"))
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, errf(400, "Not a WebSocket upgrade request"))
		return
	}
	subscribeAll := q.bool("subscribeAll")

	// The applications are registered before the handshake completes, so
	// a client that starts originating as soon as its WebSocket is open
	// misses nothing; events queue until the writer runs.
	sess := &wsSession{
		srv:    s,
		apps:   apps,
		remote: r.RemoteAddr,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if !s.addSession(sess) {
		writeError(w, errf(503, "Server shutting down"))
		return
	}
	e := s.eng
	e.lock()
	if e.closed {
		e.unlock()
		s.dropSession(sess)
		writeError(w, errf(503, "Server shutting down"))
		return
	}
	for _, name := range apps {
		a := e.apps[name]
		if a == nil {
			a = &stasisApp{name: name, subscribeAll: subscribeAll}
			e.apps[name] = a
		} else if a.session != nil && a.session != sess {
			// Asterisk 22 (app_update): the newest WebSocket wins and the
			// old one is told with ApplicationReplaced; it stays open.
			old := a.session
			frame := appendStrField([]byte{'{'}, "type", "ApplicationReplaced")
			frame = append(frame, ',')
			frame = appendStrField(frame, "application", name)
			frame = append(frame, ',')
			frame = appendStrField(frame, "asterisk_id", s.cfg.EntityID)
			frame = append(frame, '}')
			old.enqueue(frame)
		}
		a.session = sess
	}
	e.unlock()

	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.log.Debug("ari websocket upgrade failed", "err", err)
		s.dropSession(sess)
		return
	}
	sess.mu.Lock()
	sess.conn = conn
	closed := sess.closed
	sess.mu.Unlock()
	sess.answerControls()
	if closed {
		_ = conn.Close()
		s.dropSession(sess)
		return
	}
	s.log.Debug("ari websocket connected", "apps", appParam, "remote", r.RemoteAddr, "subscribe_all", subscribeAll)

	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		sess.writer()
	}()
	go func() {
		defer s.wg.Done()
		sess.reader()
		s.dropSession(sess)
	}()
}

// dropSession deactivates the applications the session served.
func (s *Server) dropSession(sess *wsSession) {
	sess.close()
	e := s.eng
	e.lock()
	for _, name := range sess.apps {
		if a := e.apps[name]; a != nil && a.session == sess {
			a.session = nil
		}
	}
	e.unlock()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
}

func (s *Server) addSession(sess *wsSession) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions == nil {
		return false
	}
	s.sessions[sess] = struct{}{}
	return true
}
