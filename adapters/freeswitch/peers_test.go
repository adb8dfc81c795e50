package freeswitch

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

func TestParseAllow(t *testing.T) {
	got, err := ParseAllow([]string{"10.0.0.5", " 192.0.2.7/24 ", "::1", "::ffff:10.1.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.5/32", "192.0.2.0/24", "::1/128", "10.1.1.1/32"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Errorf("entry %d: %s, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"fs1.example", "10.0.0.0/33", "", "10.0.0.1:8021"} {
		if _, err := ParseAllow([]string{bad}); err == nil || !strings.Contains(err.Error(), "esl_allow") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// The servers' own addresses (literal, empty host = this machine, a name
// resolved) and the esl_allow prefixes may connect; nothing else.
func TestPeerGate(t *testing.T) {
	ms := func(addr string) *MediaServer { return &MediaServer{cfg: MediaServerConfig{Address: addr}} }
	logs := &syncBuffer{}
	g := newPeerGate([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, slog.New(slog.NewTextHandler(logs, nil)))
	g.addServers([]*MediaServer{ms("127.0.0.11:8021"), ms("[::1]:8022"), ms("localhost:8023")})
	for addr, want := range map[string]bool{
		"127.0.0.11": true, "::1": true, "10.0.0.9": true,
		"127.0.0.1":  true, // localhost, resolved
		"127.0.0.12": false, "10.0.1.1": false, "192.0.2.1": false,
	} {
		if got := g.allowed(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s allowed %v, want %v", addr, got, want)
		}
	}
	local := newPeerGate(nil, slog.New(slog.NewTextHandler(logs, nil)))
	local.addServers([]*MediaServer{ms(":8021")})
	if !local.allowed(netip.MustParseAddr("127.0.0.1")) || local.allowed(netip.MustParseAddr("10.0.0.1")) {
		t.Error("a server on this machine (:8021): loopback only")
	}

	// Refusals are all counted; each peer is logged once a minute.
	a, b := netip.MustParseAddr("127.0.0.66"), netip.MustParseAddr("127.0.0.67")
	for i := 0; i < 5; i++ {
		g.refuse(a, refusedPeer)
	}
	g.refuse(b, refusedPeer)
	g.refuse(b, refusedTakeover)
	if g.refused[refusedPeer] != 6 || g.refused[refusedTakeover] != 1 {
		t.Errorf("counted %v", g.refused)
	}
	if n := strings.Count(logs.String(), "peer=127.0.0.66"); n != 1 {
		t.Errorf("127.0.0.66 logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "peer=127.0.0.67"); n != 1 {
		t.Errorf("127.0.0.67 logged %d times, want once:\n%s", n, logs.String())
	}
}
