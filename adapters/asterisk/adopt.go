package asterisk

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// Calls of an earlier owner of the application: a callctl node that died
// (or this node's previous run) leaves its connected calls in Stasis, the
// caller and the answered leg in a bridge. They stay up and counted (the
// cluster state adopts their counted legs, SPEC §5); this process watches
// them, and when one party leaves, it ends the others, as the call's own
// handler would have. Channels of such a node that are in no connected
// call (a caller mid-hunt, a ringing leg) cannot be resumed and are hung up.

// adoptedCall is a connected call of an earlier owner.
type adoptedCall struct {
	bridge  string
	members []string
}

// adoptStrays runs once a Client first connects.
func (c *Client) adoptStrays(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	var app struct {
		ChannelIDs []string `json:"channel_ids"`
		BridgeIDs  []string `json:"bridge_ids"`
	}
	if err := c.rest.do(rctx, http.MethodGet, "/applications/"+seg(c.cfg.App), nil, nil, &app); err != nil {
		if statusOf(err) != http.StatusNotFound {
			c.log.Warn("ARI: application not readable; calls of an earlier owner not looked for", "err", err)
		}
		return
	}
	if len(app.ChannelIDs) == 0 && len(app.BridgeIDs) == 0 {
		return
	}
	var bridges []struct {
		ID       string   `json:"id"`
		Channels []string `json:"channels"`
	}
	if err := c.rest.do(rctx, http.MethodGet, "/bridges", nil, nil, &bridges); err != nil {
		c.log.Warn("ARI: bridges not readable; calls of an earlier owner not looked for", "err", err)
		return
	}
	inApp := make(map[string]bool, len(app.BridgeIDs))
	for _, id := range app.BridgeIDs {
		inApp[id] = true
	}
	bridged := map[string]bool{}
	adopted := 0
	for _, b := range bridges {
		if !inApp[b.ID] || !strings.HasPrefix(b.ID, "callctl-") || len(b.Channels) < 2 {
			continue
		}
		a := &adoptedCall{bridge: b.ID, members: append([]string(nil), b.Channels...)}
		c.mu.Lock()
		taken := false
		for _, id := range a.members {
			taken = taken || c.chans[id] != nil
		}
		if !taken {
			if c.adopted == nil {
				c.adopted = map[string]*adoptedCall{}
			}
			for _, id := range a.members {
				c.adopted[id] = a
				bridged[id] = true
			}
			adopted++
		}
		c.mu.Unlock()
		if !taken {
			c.log.Info("ARI: watching a connected call of an earlier owner", "bridge", a.bridge, "channels", strings.Join(a.members, ","))
		}
	}
	var strays []string
	for _, id := range app.ChannelIDs {
		if bridged[id] || strings.HasSuffix(id, ";2") {
			continue
		}
		if ref, _ := c.lookup(id); ref != nil {
			continue
		}
		strays = append(strays, id)
	}
	if adopted > 0 {
		c.log.Info("ARI: calls of an earlier owner", "watched", adopted)
	}
	if len(strays) == 0 {
		return
	}
	// The list is taken while this connection's first events arrive: a
	// call that entered the application just now is listed before its
	// StasisStart has made it this process's. Only channels that no call
	// has claimed after a grace are an earlier owner's.
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		if !sleepCtx(ctx, strayGrace) {
			return
		}
		n := 0
		for _, id := range strays {
			if ref, _ := c.lookup(id); ref != nil {
				continue
			}
			n++
			c.log.Warn("ARI: hanging up a channel of an earlier owner that is in no connected call", "call", id)
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			if err := c.deleteChannel(rctx, id, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
				c.log.Warn("hanging up a stray channel failed", "call", id, "err", err)
			}
			cancel()
		}
		if n > 0 {
			c.log.Info("ARI: channels of an earlier owner hung up", "hung_up", n)
		}
	}()
}

// strayGrace is how long a channel listed in the application when callctl
// connects may take to be claimed by a call of this process.
const strayGrace = 2 * time.Second

// adoptedGone ends an adopted call once one of its channels left Stasis or
// was destroyed: the others are hung up and the bridge deleted.
func (c *Client) adoptedGone(id string) {
	c.mu.Lock()
	a := c.adopted[id]
	if a == nil {
		c.mu.Unlock()
		return
	}
	for _, m := range a.members {
		delete(c.adopted, m)
	}
	c.mu.Unlock()
	c.log.Info("ARI: a party of an earlier owner's call left; ending the call", "bridge", a.bridge, "left", id)
	c.background(func(ctx context.Context) {
		for _, m := range a.members {
			if m == id {
				continue
			}
			if err := c.deleteChannel(ctx, m, causeNormal); err != nil && statusOf(err) != http.StatusNotFound {
				c.log.Warn("hanging up a party of an earlier owner's call failed", "call", m, "err", err)
			}
		}
		if err := c.deleteBridge(ctx, a.bridge); err != nil && statusOf(err) != http.StatusNotFound {
			c.log.Warn("deleting an earlier owner's bridge failed", "bridge", a.bridge, "err", err)
		}
	})
}
