package asterisk

import (
	"context"
	"fmt"
	"time"

	"github.com/gorilla/websocket"
)

// callctl reads ARI's WebSocket itself (gorilla/websocket) rather than
// through an ARI library's event bus: it must see every event of a call in
// order (a lost ChannelDestroyed leaks a counted leg), survive event types
// newer than itself, and know exactly when the connection dropped so that
// it reconciles.

// dial opens the event WebSocket.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: c.cfg.RequestTimeout, ReadBufferSize: 16 << 10, WriteBufferSize: 1 << 10}
	conn, resp, err := d.DialContext(ctx, c.ws.url, c.ws.header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("ARI WebSocket: status %d: %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("ARI WebSocket: %w", err)
	}
	return conn, nil
}

// readLoop reads frames until the connection fails, handling each as it
// arrives. It pings the server so that a silent peer is noticed.
func (c *Client) readLoop(conn *websocket.Conn) error {
	defer conn.Close()
	conn.SetReadLimit(c.cfg.MaxFrame)
	deadline := 3 * c.cfg.PingInterval
	_ = conn.SetReadDeadline(time.Now().Add(deadline))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(deadline))
	})
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		t := time.NewTicker(c.cfg.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.RequestTimeout)) != nil {
					// The read side sees the failure too.
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-pinged }()
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		at := time.Now()
		_ = conn.SetReadDeadline(at.Add(deadline))
		if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
			continue
		}
		c.handleFrame(data, at)
	}
}
