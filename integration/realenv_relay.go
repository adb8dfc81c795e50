package integration

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// relay passes TCP connections from one address to another, byte for byte,
// half-closes included. The node listens for FreeSWITCH's socket
// application on one address; a lab whose servers connect to several (the
// recorded lab: fs1 to 18084, fs2 to 18085) gets its other addresses relayed
// to it, so that the lab's dialplans need no change.
type relay struct {
	ln  net.Listener
	log *slog.Logger

	mu     sync.Mutex
	to     string
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startRelay(listen, to string, log *slog.Logger) (*relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	r := &relay{ln: ln, to: to, log: log.With("relay", listen, "to", to), conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// Addr is where the relay listens.
func (r *relay) Addr() string { return r.ln.Addr().String() }

// SwitchTo passes the connections that come from now on to another address
// (a test hands a media server's next calls to another node).
func (r *relay) SwitchTo(to string) {
	r.mu.Lock()
	r.to = to
	r.mu.Unlock()
}

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.log.Warn("relay accept", "err", err)
			}
			return
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go r.pass(c)
	}
}

// track registers a connection so that Close can end it; false once closed.
func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

func (r *relay) pass(in net.Conn) {
	defer r.wg.Done()
	defer r.untrack(in)
	defer in.Close()
	r.mu.Lock()
	to := r.to
	r.mu.Unlock()
	out, err := net.DialTimeout("tcp", to, 5*time.Second)
	if err != nil {
		// As if nobody listened: FreeSWITCH's socket application returns and
		// the dialplan goes on.
		r.log.Warn("relay dial", "err", err)
		return
	}
	if !r.track(out) {
		out.Close()
		return
	}
	defer r.untrack(out)
	defer out.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	copyHalf := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Pass the end on: the peer reads EOF and can answer before closing.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	go copyHalf(out, in)
	go copyHalf(in, out)
	wg.Wait()
}

// Close stops listening, ends the connections in flight and waits.
func (r *relay) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}
