package freeswitch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Only the plan's FreeSWITCH servers may hand callctl a call (SPEC §10): a
// connection to the outbound-socket listener from any other address is
// closed before anything is sent or read on it. The allowed addresses are
// those of the servers the listener serves (the host of each one's Event
// Socket address) and the node's listen.esl_allow list, for a server whose
// connections come from another address (NAT, a second interface).

// ParseAllow reads esl_allow entries: IP addresses (10.0.0.5, ::1) or
// prefixes (10.0.0.0/24).
func ParseAllow(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("esl_allow %q: want an IP address or a prefix such as 10.0.0.0/24", e)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// Refusal reasons, as the metric labels them.
const (
	refusedPeer     = "peer_not_allowed" // an address that is not a FreeSWITCH server's
	refusedTakeover = "uuid_takeover"    // a channel another connection owns, from elsewhere
)

var refusedDesc = prometheus.NewDesc("callctl_esl_connections_refused_total",
	"Outbound Event Socket connections refused: from an address that is not one of the plan's FreeSWITCH servers (peer_not_allowed), or naming a channel another connection owns, from another server (uuid_takeover).",
	[]string{"reason"}, nil)

// resolveEvery bounds how often server addresses given as names are looked
// up again for a peer they did not match.
const resolveEvery = 30 * time.Second

// logPeers bounds the peers remembered for "logged once a minute": past it,
// refusals of peers not seen before are counted but not logged.
const logPeers = 1024

// peerGate says which peers may connect, and counts and logs the others.
type peerGate struct {
	log    *slog.Logger
	allow  []netip.Prefix // esl_allow and the servers given by address
	hosts  []string       // servers given by name, resolved when needed
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	mu         sync.Mutex
	resolved   []netip.Addr
	resolvedAt time.Time
	logged     map[netip.Addr]*peerLog
	refused    map[string]uint64
}

// peerLog is when a refused peer was last logged, and how many of its
// connections were refused since.
type peerLog struct {
	at     time.Time
	missed int
}

func newPeerGate(extra []netip.Prefix, log *slog.Logger) *peerGate {
	return &peerGate{log: log, allow: append([]netip.Prefix(nil), extra...), logged: map[netip.Addr]*peerLog{},
		refused: map[string]uint64{refusedPeer: 0, refusedTakeover: 0},
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}}
}

// addServers allows the servers' own addresses: the host of each one's
// Event Socket address. It runs before the gate is used.
func (g *peerGate) addServers(servers []*MediaServer) {
	for _, m := range servers {
		host, _, err := net.SplitHostPort(m.cfg.Address)
		if err != nil {
			host = m.cfg.Address
		}
		host = strings.Trim(host, "[]")
		switch a, err := netip.ParseAddr(host); {
		case host == "":
			// ":8021": FreeSWITCH runs on this machine and connects over
			// loopback.
			g.allow = append(g.allow, netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"))
		case err == nil:
			a = a.Unmap()
			g.allow = append(g.allow, netip.PrefixFrom(a, a.BitLen()))
		default:
			g.hosts = append(g.hosts, host)
		}
	}
}

// allowed says whether a peer may connect.
func (g *peerGate) allowed(peer netip.Addr) bool {
	for _, p := range g.allow {
		if p.Contains(peer) {
			return true
		}
	}
	if len(g.hosts) == 0 {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.resolvedAt.IsZero() && time.Since(g.resolvedAt) < resolveEvery {
		for _, a := range g.resolved {
			if a == peer {
				return true
			}
		}
		return false
	}
	// Looked up under the lock: one lookup at a time, at most one per
	// resolveEvery for peers that match nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var addrs []netip.Addr
	for _, h := range g.hosts {
		as, err := g.lookup(ctx, h)
		if err != nil {
			g.log.Warn("a FreeSWITCH server's address does not resolve: its connections are refused until it does",
				"host", h, "err", err)
			continue
		}
		for _, a := range as {
			addrs = append(addrs, a.Unmap())
		}
	}
	g.resolved, g.resolvedAt = addrs, time.Now()
	for _, a := range addrs {
		if a == peer {
			return true
		}
	}
	return false
}

// refuse counts a refused connection and logs it, once a minute per peer.
func (g *peerGate) refuse(peer netip.Addr, reason string, args ...any) {
	now := time.Now()
	g.mu.Lock()
	g.refused[reason]++
	pl := g.logged[peer]
	if pl == nil && len(g.logged) >= logPeers {
		for p, l := range g.logged {
			if now.Sub(l.at) >= time.Minute {
				delete(g.logged, p)
			}
		}
	}
	if pl == nil && len(g.logged) < logPeers {
		pl = &peerLog{at: now.Add(-time.Minute)}
		g.logged[peer] = pl
	}
	log, missed := false, 0
	if pl != nil {
		if now.Sub(pl.at) >= time.Minute {
			log, missed = true, pl.missed
			pl.at, pl.missed = now, 0
		} else {
			pl.missed++
		}
	}
	g.mu.Unlock()
	if log {
		g.log.Warn("FreeSWITCH outbound connection refused",
			append([]any{"peer", peer.String(), "reason", reason, "refused_since_last_line", missed}, args...)...)
	}
}

// Describe and Collect make the Server a Prometheus collector of its
// refusals.
func (s *Server) Describe(ch chan<- *prometheus.Desc) { ch <- refusedDesc }

// Collect reports the refusals so far.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	s.gate.mu.Lock()
	defer s.gate.mu.Unlock()
	for reason, n := range s.gate.refused {
		ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(n), reason)
	}
}

var _ prometheus.Collector = (*Server)(nil)

// peerAddr is the IP address a connection comes from.
func peerAddr(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
