package callmodel

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// recorder collects the events of a server.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) observe(_ *Tx, ev *Event) {
	r.mu.Lock()
	r.events = append(r.events, *ev)
	r.mu.Unlock()
}

func (r *recorder) kinds(uuid string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if ev.Channel.UUID == uuid || (uuid != "" && ev.Other.UUID == uuid) {
			s := ev.Kind.String()
			if ev.Kind == ChannelHangup {
				s += "(" + ev.Channel.Cause.Name + ")"
			}
			out = append(out, s)
		}
	}
	return out
}

func (r *recorder) checkSeq(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 1; i < len(r.events); i++ {
		if r.events[i].Seq != r.events[i-1].Seq+1 {
			t.Fatalf("sequence gap: %d then %d", r.events[i-1].Seq, r.events[i].Seq)
		}
	}
}

func eq(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// routeHooks answers every inbound channel it is given, like a trivial
// dialplan.
type routeHooks struct {
	BaseHooks
	answer bool
	routed []string
}

func (h *routeHooks) Route(tx *Tx, uuid string) {
	h.routed = append(h.routed, uuid)
	if h.answer {
		_ = tx.Answer(uuid)
	}
}

func newTestFleet(t *testing.T) (*Fleet, *ManualClock) {
	t.Helper()
	clk := NewManualClock(time.Unix(1_800_000_000, 0))
	f := NewFleet(WithClock(clk), WithSeed(7))
	t.Cleanup(f.Close)
	return f, clk
}

func TestLocalPairPropagation(t *testing.T) {
	f, clk := newTestFleet(t)
	s, err := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH, IP: "127.0.0.11"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	s.Subscribe(rec.observe)
	var a, b string
	err = s.Do(func(tx *Tx) error {
		var err error
		a, b, err = tx.NewLocalPair(ChannelSpec{Name: "loopback/101-a"}, ChannelSpec{Name: "loopback/101-b", Context: "targets", Destination: "101"})
		if err != nil {
			return err
		}
		if err := tx.Ring(b); err != nil {
			return err
		}
		tx.AfterFunc(b, time.Second, func(tx *Tx) { _ = tx.Answer(b) })
		tx.AfterFunc(b, 30*time.Second, func(tx *Tx) { tx.Hangup(b, CauseNormalClearing, ByRequest) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	if snap, _ := s.Snapshot(a); snap.State != StateUp {
		t.Fatalf("A not answered by B's answer: %v", snap.State)
	}
	clk.Advance(29 * time.Second)
	if n := s.ChannelCount(); n != 0 {
		t.Fatalf("%d channels left after the hangup", n)
	}
	wantA := []string{"ChannelCreated", "ChannelRinging", "ChannelAnswered", "ChannelHangup(NORMAL_CLEARING)", "ChannelDestroyed"}
	if got := rec.kinds(a); !eq(got, wantA) {
		t.Errorf("A events = %v, want %v", got, wantA)
	}
	if got := rec.kinds(b); !eq(got, wantA) {
		t.Errorf("B events = %v, want %v", got, wantA)
	}
	rec.checkSeq(t)
	// the partner's hangup is attributed to the partner
	for _, ev := range rec.events {
		if ev.Kind == ChannelHangup && ev.Channel.UUID == a && ev.Reason != ByPartner {
			t.Errorf("A hangup reason %v, want partner", ev.Reason)
		}
	}
}

func TestPhoneBehaviours(t *testing.T) {
	cases := []struct {
		name    string
		b       Behaviour
		advance time.Duration
		state   State
		outcome Outcome
		cause   Cause
	}{
		{"answer", Answer(2 * time.Second), 3 * time.Second, StateUp, OutcomeAnswered, CauseNone},
		{"busy", Busy(), time.Millisecond, StateHangup, OutcomeBusy, CauseUserBusy},
		{"reject after ring", Behaviour{Mode: ModeReject, RingFor: time.Second}, 2 * time.Second, StateHangup, OutcomeRejected, CauseCallRejected},
		{"fail", Fail(CauseNormalTemporaryFailure), time.Millisecond, StateHangup, OutcomeFailed, CauseNormalTemporaryFailure},
		{"ring", RingForever(), time.Hour, StateRinging, OutcomeRinging, CauseNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, clk := newTestFleet(t)
			s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
			f.SetPhone("fs1", "2099", c.b)
			var uuid string
			var last Snapshot
			err := s.Do(func(tx *Tx) error {
				var err error
				uuid, err = tx.Dial(ChannelSpec{Name: "sofia/internal/2099", Caller: Party{"Alice", "113999"},
					Headers: []Var{{"X-Callctl", "1"}}}, PhoneEndpoint("2099"))
				if err != nil {
					return err
				}
				return tx.Watch(uuid, func(tx *Tx, ev *Event) bool { last = ev.Channel; return true })
			})
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(c.advance)
			if last.State != c.state {
				t.Fatalf("state %v, want %v", last.State, c.state)
			}
			if last.Cause != c.cause && c.state == StateHangup {
				t.Fatalf("cause %v, want %v", last.Cause, c.cause)
			}
			rings := f.RingsOf("fs1", "2099")
			if len(rings) != 1 {
				t.Fatalf("%d rings, want 1", len(rings))
			}
			r := rings[0]
			if r.Outcome != c.outcome {
				t.Errorf("outcome %v, want %v", r.Outcome, c.outcome)
			}
			if r.Caller.Number != "113999" || r.Headers["X-Callctl"] != "1" {
				t.Errorf("ring saw caller %+v headers %v", r.Caller, r.Headers)
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	f, _ := newTestFleet(t)
	s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
	f.SetPhone("fs1", "2001", Unregistered())
	for ep, want := range map[Endpoint]Cause{
		PhoneEndpoint("2001"):         CauseUserNotRegistered,
		PhoneEndpoint("2002"):         CauseSubscriberAbsent,
		PSTNEndpoint("+4930123"):      CauseUnallocatedNumber,
		TrunkEndpoint("nowhere", "1"): CauseNoRouteDestination,
	} {
		err := s.Do(func(tx *Tx) error {
			_, err := tx.Dial(ChannelSpec{Name: "x"}, ep)
			return err
		})
		var ce *CauseError
		if !errors.As(err, &ce) || ce.Cause != want {
			t.Errorf("dial %v: %v, want %v", ep, err, want)
		}
	}
	if s.ChannelCount() != 0 || len(f.Rings()) != 0 {
		t.Errorf("a failed dial left channels or rings")
	}
}

func TestCallerHangupCancelsRing(t *testing.T) {
	f, clk := newTestFleet(t)
	s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
	f.SetPhone("fs1", "2099", RingForever())
	var leg string
	_ = s.Do(func(tx *Tx) error {
		var err error
		leg, err = tx.Dial(ChannelSpec{Name: "sofia/internal/2099"}, PhoneEndpoint("2099"))
		return err
	})
	clk.Advance(5 * time.Second)
	_ = s.Do(func(tx *Tx) error { tx.Hangup(leg, CauseOriginatorCancel, ByRequest); return nil })
	r := f.RingsOf("fs1", "2099")[0]
	if r.Outcome != OutcomeCancelled || r.End.Sub(r.Start) != 5*time.Second {
		t.Fatalf("ring %+v, want cancelled after 5s", r)
	}
}

func TestTrunkCall(t *testing.T) {
	f := NewFleet(WithSeed(1))
	defer f.Close()
	s1, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH, IP: "127.0.0.11"})
	s2, _ := f.AddServer(ServerConfig{Name: "fs2", Kind: FreeSWITCH, IP: "127.0.0.12"})
	h2 := &routeHooks{answer: true}
	s2.SetHooks(h2)
	events := make(chan Event, 64)
	s1.Subscribe(func(_ *Tx, ev *Event) { events <- *ev })
	var a string
	err := s1.Do(func(tx *Tx) error {
		var err error
		a, err = tx.Dial(ChannelSpec{Name: "sofia/internal/1000", Caller: Party{"", "113999"},
			Headers: []Var{{"X-Org", "acme"}}}, TrunkEndpoint("fs2", "2099"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitKind(t, events, a, ChannelAnswered)
	chans := s2.Channels()
	if len(chans) != 1 {
		t.Fatalf("fs2 has %d channels", len(chans))
	}
	b := chans[0]
	if b.Origin != OriginTrunk || b.Destination != "2099" || b.Caller.Number != "113999" ||
		b.NetworkIP != "127.0.0.11" || b.PeerUUID != a || len(b.Headers) != 1 || b.Headers[0].Value != "acme" {
		t.Fatalf("receiving channel %+v", b)
	}
	// the receiving side hangs up: the sender gets the cause
	_ = s2.Do(func(tx *Tx) error { tx.Hangup(b.UUID, CauseUserBusy, ByRequest); return nil })
	ev := waitKind(t, events, a, ChannelHangup)
	if ev.Channel.Cause != CauseUserBusy || ev.Reason != ByRemote {
		t.Fatalf("sender hangup %v %v", ev.Channel.Cause, ev.Reason)
	}
}

func TestTrunkCancelBeforeAnswer(t *testing.T) {
	f := NewFleet(WithSeed(2))
	defer f.Close()
	s1, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH, IP: "127.0.0.11"})
	s2, _ := f.AddServer(ServerConfig{Name: "fs2", Kind: FreeSWITCH, IP: "127.0.0.12"})
	events := make(chan Event, 64)
	s2.Subscribe(func(_ *Tx, ev *Event) { events <- *ev })
	var a string
	_ = s1.Do(func(tx *Tx) error {
		var err error
		a, err = tx.Dial(ChannelSpec{Name: "sofia/internal/1000"}, TrunkEndpoint("fs2", "2099"))
		return err
	})
	created := waitKind(t, events, "", ChannelCreated)
	_ = s1.Do(func(tx *Tx) error { tx.Hangup(a, CauseNoAnswer, ByTimeout); return nil })
	ev := waitKind(t, events, created.Channel.UUID, ChannelHangup)
	if ev.Channel.Cause != CauseOriginatorCancel {
		t.Fatalf("receiving side cause %v, want ORIGINATOR_CANCEL", ev.Channel.Cause)
	}
}

func waitKind(t *testing.T, ch <-chan Event, uuid string, kind EventKind) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Kind == kind && (uuid == "" || ev.Channel.UUID == uuid) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %v for %s", kind, uuid)
		}
	}
}

func TestRestartDropsChannelsSilently(t *testing.T) {
	f, clk := newTestFleet(t)
	s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
	f.SetPhone("fs1", "2099", Answer(time.Second))
	rec := &recorder{}
	s.Subscribe(rec.observe)
	_ = s.Do(func(tx *Tx) error {
		_, err := tx.Dial(ChannelSpec{Name: "sofia/internal/2099"}, PhoneEndpoint("2099"))
		return err
	})
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if s.ChannelCount() != 0 {
		t.Fatal("channels survived the restart")
	}
	for _, ev := range rec.events {
		if ev.Kind == ChannelHangup || ev.Kind == ChannelAnswered {
			t.Fatalf("restart produced %v", ev.Kind)
		}
	}
	if last := rec.events[len(rec.events)-1]; last.Kind != ServerRestarted {
		t.Fatalf("last event %v", last.Kind)
	}
	if r := f.RingsOf("fs1", "2099")[0]; r.Outcome != OutcomeLost {
		t.Fatalf("ring outcome %v", r.Outcome)
	}
	if clk.Pending() != 0 {
		t.Fatalf("%d timers still pending", clk.Pending())
	}
}

func TestVarsSnapshotsAreStable(t *testing.T) {
	var l varLog
	l.set("a", "1")
	l.set("b", "2")
	s1 := l.snapshot()
	l.set("a", "3")
	l.unset("b")
	l.set("c", "4")
	s2 := l.snapshot()
	if got := fmt.Sprint(s1.List()); got != "[{a 1} {b 2}]" {
		t.Errorf("old snapshot changed: %s", got)
	}
	if got := fmt.Sprint(s2.List()); got != "[{a 3} {c 4}]" {
		t.Errorf("new snapshot: %s", got)
	}
	if v, ok := s2.Get("b"); ok {
		t.Errorf("unset var still visible: %q", v)
	}
	for i := 0; i < 500; i++ { // forces compactions
		l.set("x", fmt.Sprint(i))
	}
	if got := fmt.Sprint(s2.List()); got != "[{a 3} {c 4}]" {
		t.Errorf("snapshot changed by compaction: %s", got)
	}
	if v, _ := l.get("x"); v != "499" || l.snapshot().Len() != 3 {
		t.Errorf("after compaction: x=%s len=%d", v, l.snapshot().Len())
	}
}

func TestObserverMayActAndOrderHolds(t *testing.T) {
	f, _ := newTestFleet(t)
	s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
	rec := &recorder{}
	// an observer that hangs up every channel as soon as it is answered
	s.Subscribe(func(tx *Tx, ev *Event) {
		if ev.Kind == ChannelAnswered {
			tx.Hangup(ev.Channel.UUID, CauseNormalClearing, ByRequest)
		}
	})
	s.Subscribe(rec.observe)
	var u string
	_ = s.Do(func(tx *Tx) error {
		u, _ = tx.NewChannel(ChannelSpec{Name: "c"})
		return tx.Answer(u)
	})
	want := []string{"ChannelCreated", "ChannelAnswered", "ChannelHangup(NORMAL_CLEARING)", "ChannelDestroyed"}
	if got := rec.kinds(u); !eq(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	rec.checkSeq(t)
}

func TestStopIsFinal(t *testing.T) {
	f := NewFleet()
	s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
	got := make(chan EventKind, 4)
	s.Subscribe(func(_ *Tx, ev *Event) { got <- ev.Kind })
	_ = s.Do(func(tx *Tx) error {
		u, _ := tx.NewChannel(ChannelSpec{Name: "c"})
		tx.AfterFunc(u, time.Hour, func(*Tx) {})
		tx.AfterFunc("", time.Hour, func(*Tx) {})
		return nil
	})
	f.Close()
	if err := s.Do(func(*Tx) error { return nil }); !errors.Is(err, ErrStopped) {
		t.Fatalf("Do after stop: %v", err)
	}
	<-got
	if k := <-got; k != ServerStopped {
		t.Fatalf("got %v, want ServerStopped", k)
	}
}

func TestCauses(t *testing.T) {
	if c, ok := CauseByName("user_busy"); !ok || c.Code != 17 {
		t.Fatal("USER_BUSY lookup")
	}
	if CauseOriginatorCancel.Q850() != 16 || CauseUserBusy.Q850() != 17 {
		t.Fatal("Q850 folding")
	}
	if b, ok := TargetBehaviour("201"); !ok || b.Mode != ModeBusy {
		t.Fatal("2XX is busy")
	}
	if _, ok := TargetBehaviour("1000"); ok {
		t.Fatal("1000 is not a target")
	}
}
