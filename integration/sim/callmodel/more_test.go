package callmodel

import (
	"sync"
	"testing"
	"time"
)

func TestPostsRunInOrder(t *testing.T) {
	f := NewFleet()
	defer f.Close()
	s1, _ := f.AddServer(ServerConfig{Name: "a", Kind: FreeSWITCH})
	_, _ = f.AddServer(ServerConfig{Name: "b", Kind: FreeSWITCH})
	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	err := s1.Do(func(tx *Tx) error {
		for i := 0; i < 500; i++ {
			i := i
			if err := tx.Post("b", func(*Tx) {
				mu.Lock()
				got = append(got, i)
				n := len(got)
				mu.Unlock()
				if n == 500 {
					close(done)
				}
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("posts not all run")
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("post %d ran as #%d", v, i)
		}
	}
	if err := s1.Do(func(tx *Tx) error { return tx.Post("nowhere", func(*Tx) {}) }); err == nil {
		t.Fatal("post to an unknown server accepted")
	}
}

func TestRestartHangsUpTrunkPeers(t *testing.T) {
	f := NewFleet()
	defer f.Close()
	s1, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH, IP: "127.0.0.11"})
	s2, _ := f.AddServer(ServerConfig{Name: "fs2", Kind: FreeSWITCH, IP: "127.0.0.12"})
	s2.SetHooks(&routeHooks{answer: true})
	events := make(chan Event, 64)
	s1.Subscribe(func(_ *Tx, ev *Event) { events <- *ev })
	var up, ringing string
	_ = s1.Do(func(tx *Tx) error {
		up, _ = tx.Dial(ChannelSpec{Name: "answered"}, TrunkEndpoint("fs2", "1"))
		return nil
	})
	waitKind(t, events, up, ChannelAnswered)
	s2.SetHooks(&routeHooks{}) // the next call only rings on fs2
	_ = s1.Do(func(tx *Tx) error {
		ringing, _ = tx.Dial(ChannelSpec{Name: "pending"}, TrunkEndpoint("fs2", "2"))
		return nil
	})
	for s2.ChannelCount() < 2 {
		time.Sleep(time.Millisecond)
	}
	if err := s2.Restart(); err != nil {
		t.Fatal(err)
	}
	causes := map[string]Cause{}
	for len(causes) < 2 {
		ev := waitKind(t, events, "", ChannelHangup)
		causes[ev.Channel.UUID] = ev.Channel.Cause
	}
	if causes[up] != CauseMediaTimeout || causes[ringing] != CauseNormalTemporaryFailure {
		t.Fatalf("causes after the far end's restart: %v", causes)
	}
	// a stopped server refuses trunk calls: the leg fails at once
	s2.Stop()
	var late string
	_ = s1.Do(func(tx *Tx) error {
		late, _ = tx.Dial(ChannelSpec{Name: "late"}, TrunkEndpoint("fs2", "3"))
		return nil
	})
	if ev := waitKind(t, events, late, ChannelHangup); ev.Channel.Cause != CauseNormalTemporaryFailure {
		t.Fatalf("dial to a stopped server: %v", ev.Channel.Cause)
	}
}

func TestScaledClock(t *testing.T) {
	c := ScaledClock(100)
	t0 := c.Now()
	fired := make(chan time.Time, 1)
	start := time.Now()
	c.AfterFunc(2*time.Second, func() { fired <- c.Now() })
	select {
	case at := <-fired:
		real := time.Since(start)
		if real > time.Second || at.Sub(t0) < 2*time.Second {
			t.Fatalf("2 s at x100 took %v real, %v scaled", real, at.Sub(t0))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("scaled timer never fired")
	}
}

func TestManualClockStop(t *testing.T) {
	c := NewManualClock(time.Unix(0, 0))
	ran := 0
	t1 := c.AfterFunc(time.Second, func() { ran++ })
	c.AfterFunc(2*time.Second, func() { ran += 10 })
	if !t1.Stop() || t1.Stop() {
		t.Fatal("Stop must report true once")
	}
	c.Advance(3 * time.Second)
	if ran != 10 || c.Pending() != 0 {
		t.Fatalf("ran=%d pending=%d", ran, c.Pending())
	}
}

func TestEarlyMediaPhoneAndAnswerHangup(t *testing.T) {
	f, clk := newTestFleet(t)
	s, _ := f.AddServer(ServerConfig{Name: "fs1", Kind: FreeSWITCH})
	f.SetPhone("fs1", "2000", Behaviour{Mode: ModeAnswer, RingFor: time.Second, HangupAfter: 5 * time.Second, EarlyMedia: true})
	rec := &recorder{}
	s.Subscribe(rec.observe)
	var u string
	_ = s.Do(func(tx *Tx) error {
		var err error
		u, err = tx.Dial(ChannelSpec{Name: "p"}, PhoneEndpoint("2000"))
		return err
	})
	clk.Advance(10 * time.Second)
	want := []string{"ChannelCreated", "ChannelEarlyMedia", "ChannelAnswered", "ChannelHangup(NORMAL_CLEARING)", "ChannelDestroyed"}
	if got := rec.kinds(u); !eq(got, want) {
		t.Fatalf("events %v want %v", got, want)
	}
	r := f.RingsOf("fs1", "2000")[0]
	if r.Outcome != OutcomeAnswered || r.End.Sub(r.Answered) != 5*time.Second {
		t.Fatalf("ring %+v", r)
	}
}
