package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callctl/callctl/internal/labtest"
)

// BenchmarkRealHunt measures, on the lab's first server of each kind, the
// time from originate to answer of a three-member hunt (busy, busy,
// answers) done two ways side by side, one after the other in each
// iteration:
//
//   - native: the media server's own hunt, the lab's native context, hunt3
//     (FreeSWITCH: bridge loopback/203|loopback/204|loopback/505; Asterisk:
//     Dial of Local/203, then Local/204, then Local/505, @targets);
//   - callctl: the same members as service number 8008003, handed to
//     callctl's node (FreeSWITCH's socket application, Asterisk's Stasis).
//
// Each kind reports the medians (ms) and their ratio, callctl/native. Run it
// with the lab's variables: integration/lab/lab.sh run -- go test -run '^$'
// -bench BenchmarkRealHunt -benchtime 25x ./integration/ (make bench-real).
func BenchmarkRealHunt(b *testing.B) {
	cfg, err := RealConfigFrom(os.Getenv)
	if err != nil {
		b.Fatalf("real-server mode misconfigured: %v", err)
	}
	b.Run("freeswitch", func(b *testing.B) { benchRealHunt(b, cfg, RealFreeSWITCH) })
	b.Run("asterisk", func(b *testing.B) { benchRealHunt(b, cfg, RealAsterisk) })
}

func benchRealHunt(b *testing.B, cfg RealConfig, fleet string) {
	f, why := cfg.Fleet(fleet, false)
	if why != "" {
		labtest.Missing(b, "%s (integration/lab/lab.sh starts a lab and prints them)", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, err := StartReal(ctx, cfg, f, Endpoints{"grp1": {"77721403": Busy, "77721404": Busy, "77721405": Answers}}, logger())
	if err != nil {
		b.Fatalf("start the %s fleet: %v", fleet, err)
	}
	defer e.Close()
	// answered places a call to dialed in context of srv11's dialplan and
	// returns how long the server took to answer it; the call is then ended
	// and its channels are gone before the next.
	var answered func(dialed, context string) time.Duration
	var channels func() []Channel
	switch side := e.phones["srv11"].(type) {
	case *fsSide:
		channels = side.Channels
		answered = func(dialed, context string) time.Duration {
			// ignore_early_media: the answer, not the early media a hunt
			// sends while it rings, ends the originate.
			id := newID()
			start := time.Now()
			fr, err := side.command(ctx, fmt.Sprintf("api originate {ignore_early_media=true,origination_uuid=%s,origination_caller_id_number=1100}loopback/%s/%s &park()",
				id, dialed, context))
			d := time.Since(start)
			if err != nil {
				b.Fatalf("originate %s: %v", dialed, err)
			}
			if res := strings.TrimSpace(string(fr.body)); !strings.HasPrefix(res, "+OK") {
				b.Fatalf("originate %s@%s: %s", dialed, context, res)
			}
			if err := side.Kill(ctx, id); err != nil {
				b.Fatalf("end the call: %v", err)
			}
			return d
		}
	case *ariSide:
		channels = side.Channels
		answered = func(dialed, context string) time.Duration {
			start := time.Now()
			call, err := side.placeIn(ctx, "1100", dialed, context)
			if err != nil {
				b.Fatalf("originate %s@%s: %v", dialed, context, err)
			}
			if err := call.WaitAnswered(ctx); err != nil {
				b.Fatalf("originate %s@%s: %v", dialed, context, err)
			}
			d := time.Since(start)
			if err := call.Hangup(ctx); err != nil {
				b.Fatalf("end the call: %v", err)
			}
			return d
		}
	default:
		b.Fatalf("srv11 of the %s fleet: no phone side of its kind", fleet)
	}
	answer := func(dialed, context string) time.Duration {
		// Media servers work in 20 ms ticks (FreeSWITCH's timers, its event
		// socket's poll): a loop whose calls start in step with them would
		// measure one phase of the tick only. A random pause first spreads
		// the calls over the tick, as callers arrive.
		time.Sleep(rand.N(20 * time.Millisecond))
		d := answered(dialed, context)
		deadline := time.Now().Add(10 * time.Second)
		for live(channels()) > 0 || e.Count(ctx, "server", "srv11") > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("after %s@%s: %d channels up, %d counted", dialed, context, live(channels()), e.Count(ctx, "server", "srv11"))
			}
			time.Sleep(2 * time.Millisecond)
		}
		return d
	}
	// Where the suite's calls start: the context that hands them to callctl.
	via := f.Servers["srv11"].Context
	// One of each first: the dialplan and callctl's first call warm up.
	answer("hunt3", "native")
	answer("8008003", via)
	var native, callctl []time.Duration
	b.ResetTimer()
	for b.Loop() {
		native = append(native, answer("hunt3", "native"))
		callctl = append(callctl, answer("8008003", via))
	}
	b.StopTimer()
	// callctl really hunted: every call through it rang 03 and 04 (busy)
	// and was answered by 05.
	want := len(callctl) + 1
	// Records are written once each call has ended; the last may still be
	// on its way.
	hunted := func() (n int) {
		for _, rec := range e.Records.All() {
			if rec.Dialed == "8008003" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); hunted() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	hunts, all := 0, e.Records.All()
	for _, rec := range all {
		if rec.Dialed != "8008003" {
			continue
		}
		hunts++
		var got []string
		for _, a := range rec.Attempts {
			got = append(got, a.Target+":"+a.Outcome.String())
		}
		if want := "77721403:busy 77721404:busy 77721405:answered"; strings.Join(got, " ") != want || rec.Answered != "77721405" {
			b.Errorf("a call through callctl (%s): attempts %v answered by %q, want %s", rec.CallID, got, rec.Answered, want)
		}
	}
	if hunts != want {
		b.Fatalf("%d records of 8008003 (of %d), want %d", hunts, len(all), want)
	}
	n, c := median(native), median(callctl)
	b.ReportMetric(ms(n), "native-ms")
	b.ReportMetric(ms(c), "callctl-ms")
	b.ReportMetric(float64(c)/float64(n), "ratio")
	b.Logf("%s: native min %s median %s max %s; callctl min %s median %s max %s (%d each)", fleet,
		slices.Min(native), n, slices.Max(native), slices.Min(callctl), c, slices.Max(callctl), len(native))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// live counts the channels still up.
func live(chs []Channel) int {
	n := 0
	for _, c := range chs {
		if c.Ended.IsZero() {
			n++
		}
	}
	return n
}
