package sim

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/callctl/callctl/integration/sim/ari"
	"github.com/callctl/callctl/integration/sim/callmodel"
	"github.com/callctl/callctl/integration/sim/esl"
)

// Lab is a running set of simulated media servers on loopback, each with
// its front (FreeSWITCH event socket or Asterisk ARI), the phones
// registered on them and the simulated PSTN.
type Lab struct {
	cfg     Config
	fleet   *callmodel.Fleet
	log     *slog.Logger
	servers map[string]*Server
	order   []string
}

// Server is one simulated server of a lab.
type Server struct {
	Name  string
	Kind  callmodel.Kind
	IP    string
	model *callmodel.Server
	esl   *esl.Server
	ari   *ari.Server
	cfg   ServerConfig
}

// ESLAddr is the event socket address of a FreeSWITCH server.
func (s *Server) ESLAddr() string {
	if s.esl == nil {
		return ""
	}
	return s.esl.Addr()
}

// ARIURL is the ARI base URL of an Asterisk server (http://127.0.0.1:port/ari).
func (s *Server) ARIURL() string {
	if s.ari == nil {
		return ""
	}
	return s.ari.URL()
}

// Password is the event socket or ARI password.
func (s *Server) Password() string {
	if s.cfg.Password != "" {
		return s.cfg.Password
	}
	if s.Kind == callmodel.Asterisk {
		return "ari"
	}
	return "ClueCon"
}

// ESL returns the FreeSWITCH front (nil for an Asterisk).
func (s *Server) ESL() *esl.Server { return s.esl }

// ARI returns the Asterisk front (nil for a FreeSWITCH).
func (s *Server) ARI() *ari.Server { return s.ari }

// Model returns the model server.
func (s *Server) Model() *callmodel.Server { return s.model }

// StartLab starts every server of cfg on loopback. Close stops them.
func StartLab(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	opts := []callmodel.Option{callmodel.WithLogger(logger)}
	if cfg.Speed != 1 {
		opts = append(opts, callmodel.WithClock(callmodel.ScaledClock(cfg.Speed)))
	}
	if cfg.Seed != 0 {
		opts = append(opts, callmodel.WithSeed(cfg.Seed))
	}
	l := &Lab{cfg: cfg, fleet: callmodel.NewFleet(opts...), log: logger.With("sim", "lab"), servers: map[string]*Server{}}
	for _, sc := range cfg.Servers {
		if err := ctx.Err(); err != nil {
			l.Close()
			return nil, fmt.Errorf("lab: %w", err)
		}
		if err := l.startServer(sc); err != nil {
			l.Close()
			return nil, err
		}
	}
	for _, p := range cfg.Phones {
		b, _ := p.Behaviour.Model()
		l.fleet.SetPhone(p.Server, p.Ext, b)
	}
	for _, p := range cfg.PSTN {
		b, _ := p.Behaviour.Model()
		l.fleet.SetPSTN(p.Number, b)
	}
	if cfg.PSTNDefault != nil {
		b, _ := cfg.PSTNDefault.Model()
		l.fleet.SetPSTNDefault(&b)
	}
	return l, nil
}

func (l *Lab) startServer(sc ServerConfig) error {
	kind := callmodel.Kind(sc.Kind)
	ms, err := l.fleet.AddServer(callmodel.ServerConfig{Name: sc.Name, Kind: kind, IP: sc.IP})
	if err != nil {
		return fmt.Errorf("lab: server %s: %w", sc.Name, err)
	}
	srv := &Server{Name: sc.Name, Kind: kind, IP: sc.IP, model: ms, cfg: sc}
	switch kind {
	case callmodel.FreeSWITCH:
		e, err := esl.New(ms, esl.Config{
			Listen:      sc.Listen,
			Password:    sc.Password,
			Switchname:  sc.Name,
			Controllers: sc.Controllers,
			Gateways:    sc.Trunks,
			Heartbeat:   sc.Heartbeat,
			Logger:      l.log,
		})
		if err != nil {
			return fmt.Errorf("lab: server %s: %w", sc.Name, err)
		}
		if err := e.Start(); err != nil {
			return fmt.Errorf("lab: server %s: %w", sc.Name, err)
		}
		srv.esl = e
	case callmodel.Asterisk:
		a, err := ari.Attach(ms, ari.Config{
			Addr:         sc.Listen,
			Password:     sc.Password,
			App:          sc.App,
			TrunkServers: sc.Trunks,
			Logger:       l.log,
		})
		if err != nil {
			return fmt.Errorf("lab: server %s: %w", sc.Name, err)
		}
		if err := a.Start(); err != nil {
			return fmt.Errorf("lab: server %s: %w", sc.Name, err)
		}
		srv.ari = a
	}
	l.servers[sc.Name] = srv
	l.order = append(l.order, sc.Name)
	return nil
}

// Close stops every server and waits for every goroutine of the lab.
func (l *Lab) Close() {
	for _, name := range l.order {
		s := l.servers[name]
		if s.esl != nil {
			_ = s.esl.Close()
		}
		if s.ari != nil {
			_ = s.ari.Close()
		}
	}
	l.fleet.Close()
}

// Fleet returns the call model behind the lab.
func (l *Lab) Fleet() *callmodel.Fleet { return l.fleet }

// Server returns a server of the lab, or nil.
func (l *Lab) Server(name string) *Server { return l.servers[name] }

// Servers returns the servers in configuration order.
func (l *Lab) Servers() []*Server {
	out := make([]*Server, 0, len(l.order))
	for _, n := range l.order {
		out = append(out, l.servers[n])
	}
	return out
}

func (l *Lab) server(name string) (*Server, error) {
	s, ok := l.servers[name]
	if !ok {
		return nil, fmt.Errorf("lab: no server %q", name)
	}
	return s, nil
}

// SetPhone registers or re-scripts a phone.
func (l *Lab) SetPhone(server, ext string, b callmodel.Behaviour) { l.fleet.SetPhone(server, ext, b) }

// SetPSTN scripts a PSTN number.
func (l *Lab) SetPSTN(number string, b callmodel.Behaviour) { l.fleet.SetPSTN(number, b) }

// Rings returns every ring of a phone.
func (l *Lab) Rings(server, ext string) []callmodel.Ring { return l.fleet.RingsOf(server, ext) }

// PSTNRings returns every ring of a PSTN number.
func (l *Lab) PSTNRings(number string) []callmodel.Ring { return l.fleet.RingsOf("", number) }

// AllRings returns every ring, oldest first.
func (l *Lab) AllRings() []callmodel.Ring { return l.fleet.Rings() }

// RingsSince returns the rings that started at or after t.
func (l *Lab) RingsSince(t time.Time) []callmodel.Ring {
	var out []callmodel.Ring
	for _, r := range l.fleet.Rings() {
		if !r.Start.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// Now is the lab clock's time.
func (l *Lab) Now() time.Time { return l.fleet.Clock().Now() }

// Channels returns the channels of a server.
func (l *Lab) Channels(server string) []callmodel.Snapshot {
	s, ok := l.servers[server]
	if !ok {
		return nil
	}
	return s.model.Channels()
}

// ChannelCount counts all channels of the lab.
func (l *Lab) ChannelCount() int {
	n := 0
	for _, s := range l.servers {
		n += s.model.ChannelCount()
	}
	return n
}

// Fault injection.

// DropConnections closes every control connection of a server abruptly:
// for FreeSWITCH every event socket connection (inbound and outbound), for
// Asterisk every ARI WebSocket. It returns how many were closed (-1 when
// the front does not count them).
func (l *Lab) DropConnections(server string) (int, error) {
	s, err := l.server(server)
	if err != nil {
		return 0, err
	}
	if s.esl != nil {
		return s.esl.DropConnections(), nil
	}
	s.ari.DropWebSockets()
	return -1, nil
}

// Restart makes a server lose every call at once, as a crash and restart
// does: its channels vanish without hangup events, its connections drop,
// and the far ends of its trunk calls on other servers hang up.
func (l *Lab) Restart(ctx context.Context, server string) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	if s.esl != nil {
		return s.model.Restart()
	}
	return s.ari.Restart(ctx, 0, "")
}

// Refuse makes a server refuse (on) or accept again (off) new control
// connections: FreeSWITCH closes new event socket connections at once;
// Asterisk answers every REST request with 503 for d.
func (l *Lab) Refuse(server string, on bool, d time.Duration) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	if s.esl != nil {
		s.esl.SetRefusing(on)
		return nil
	}
	if on {
		s.ari.FailREST(503, d)
	} else {
		s.ari.FailREST(0, 0)
	}
	return nil
}

// SendMalformed writes a broken frame on a server's control connections
// (FreeSWITCH) or application WebSocket (Asterisk, app ""= the default
// application). It returns how many connections got it.
func (l *Lab) SendMalformed(server string, kind esl.Malformed) (int, error) {
	s, err := l.server(server)
	if err != nil {
		return 0, err
	}
	if s.esl != nil {
		return s.esl.SendMalformed(kind, false), nil
	}
	app := s.cfg.App
	if app == "" {
		app = "controller"
	}
	if s.ari.SendRaw(app, []byte(`{"type":"StasisStart","channel":{"id":`)) {
		return 1, nil
	}
	return 0, nil
}

// BlindTransfer transfers the caller on channel uuid to dest as a SIP REFER
// from the phone it talks to does. On FreeSWITCH the dialplan runs again and
// a second outbound connection arrives for the same uuid; on Asterisk (core
// handling) a Local channel replaces the phone in the bridge and its other
// half comes back into Stasis with dest.
func (l *Lab) BlindTransfer(server, uuid, dest string) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	if s.esl != nil {
		return s.esl.BlindTransfer(uuid, dest)
	}
	// Asterisk: the phone the channel talks to sends the REFER, from its own
	// channel (the model keeps the ARI ids of the channels ARI originated).
	var phone string
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		if snap, ok := tx.Snapshot(uuid); ok {
			phone = snap.BridgedTo
		}
		return nil
	})
	if phone == "" {
		return fmt.Errorf("lab: blind transfer: %s is not bridged with a phone", uuid)
	}
	return s.ari.BlindTransfer(phone, dest)
}

// AttXfer makes the phone talking to the caller on channel held consult
// dialed by FreeSWITCH's own att_xfer, as an operator's binding does
// (uuid_broadcast <phone's channel> att_xfer::loopback/<dialed>/default
// aleg): the phone's channel originates the consultation into the
// controller. It returns the phone's channel, whose hangup completes the
// transfer and whose # (RecvDTMF) cancels it.
func (l *Lab) AttXfer(server, held, dialed string) (phone string, err error) {
	s, err := l.server(server)
	if err != nil {
		return "", err
	}
	if s.esl == nil {
		return "", fmt.Errorf("lab: att_xfer is FreeSWITCH's")
	}
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		if snap, ok := tx.Snapshot(held); ok {
			phone = snap.BridgedTo
		}
		return nil
	})
	if phone == "" {
		return "", fmt.Errorf("lab: att_xfer: %s is not bridged with a phone", held)
	}
	return phone, s.esl.AttXfer(phone, "loopback/"+dialed+"/default")
}

// RecvDTMF makes a FreeSWITCH channel receive digits from its phone.
func (l *Lab) RecvDTMF(server, uuid, digits string) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	if s.esl == nil {
		return fmt.Errorf("lab: uuid_recv_dtmf is FreeSWITCH's")
	}
	return s.esl.RecvDTMF(uuid, digits)
}

// AttendedTransfer transfers the caller on channel held to the party of the
// consultation call whose caller channel is consult, as the phone that talks
// to held does with a SIP REFER that replaces its consultation dialog: the
// held caller is joined with consult's connected leg. FreeSWITCH hangs up
// both of the phone's channels; Asterisk (core handling) links the two
// calls' bridges with a Local pair and hangs up the consultation's channel,
// and the phone hangs up its other line once told the transfer worked.
func (l *Lab) AttendedTransfer(server, held, consult string) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	var phone string
	_ = s.model.Do(func(tx *callmodel.Tx) error {
		if snap, ok := tx.Snapshot(held); ok {
			phone = snap.BridgedTo
		}
		return nil
	})
	if phone == "" {
		return fmt.Errorf("lab: attended transfer: %s is not bridged with a phone", held)
	}
	if s.esl == nil {
		if err := s.ari.AttendedTransfer(phone, consult); err != nil {
			return err
		}
		return l.endLinesAfterNotify(s, phone, consult)
	}
	return s.esl.AttendedTransfer(phone, consult)
}

// endLinesAfterNotify is what the phone that sent a REFER with Replaces
// does once a final NOTIFY says the transfer worked: it hangs up whatever
// of its two lines Asterisk left up (its first line; the second too under
// ari-only handling). Asterisk never ends the first itself
// (traces/transfers/asterisk case 4).
func (l *Lab) endLinesAfterNotify(s *Server, phone, consult string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		final := 0
		for _, r := range l.fleet.Rings() {
			if r.UUID == phone && len(r.Notifies) > 0 && r.Notifies[len(r.Notifies)-1] >= 200 {
				final = r.Notifies[len(r.Notifies)-1]
			}
		}
		switch {
		case final >= 300:
			return fmt.Errorf("lab: attended transfer: the phone got NOTIFY %d", final)
		case final >= 200:
			return s.model.Do(func(tx *callmodel.Tx) error {
				tx.Hangup(phone, callmodel.CauseNormalClearing, callmodel.ByRemote)
				tx.Hangup(consult, callmodel.CauseNormalClearing, callmodel.ByRemote)
				return nil
			})
		case time.Now().After(deadline):
			return fmt.Errorf("lab: attended transfer: no final NOTIFY for the phone on %s", phone)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Transfer sends a channel to dest in context as an IVR's or an operator's
// transfer does (no REFER, no transferring user): uuid_transfer on
// FreeSWITCH, a redirect (AMI Redirect, another application's /continue)
// on Asterisk.
func (l *Lab) Transfer(server, uuid, dest, context string) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	if s.esl == nil {
		return s.ari.Redirect(uuid, context, dest)
	}
	return s.esl.Transfer(uuid, dest, context)
}

// Hangup hangs up any channel of the lab with a cause (a far end hanging
// up).
func (l *Lab) Hangup(server, uuid string, cause callmodel.Cause) error {
	s, err := l.server(server)
	if err != nil {
		return err
	}
	return s.model.Do(func(tx *callmodel.Tx) error {
		if !tx.Hangup(uuid, cause, callmodel.ByRemote) {
			return fmt.Errorf("lab: hangup %s: %w", uuid, callmodel.ErrNoChannel)
		}
		return nil
	})
}

// WaitIdle waits until no channel is left anywhere in the lab.
func (l *Lab) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		if l.ChannelCount() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var left []string
			for _, s := range l.Servers() {
				for _, ch := range s.model.Channels() {
					left = append(left, s.Name+":"+ch.Name)
				}
			}
			sort.Strings(left)
			return fmt.Errorf("lab: channels still up: %v: %w", left, ctx.Err())
		case <-t.C:
		}
	}
}
