package asterisk

import (
	"testing"
	"time"

	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/integration/sim/callmodel"
)

// A feature code hands the call to Asterisk's dialplan (continue to the
// features context, where *98 answers and holds the caller). The call stays
// callctl's after its StasisEnd: the application subscribed to the channel
// first, so the call is live as handed off until the channel is destroyed,
// and only then is it recorded.
func TestHandoffWatchesTheChannelUntilItEnds(t *testing.T) {
	l := newLab(t, labOptions{})
	caller := l.call("2001", "*98", callmodel.CallerPlan{})
	// Answered by the features context: the channel left Stasis.
	waitFor(t, 10*time.Second, func() bool { return !l.obs.get(caller).answered.IsZero() }, "answered in the features context")
	handedOff := func() bool {
		for _, v := range l.eng.Calls() {
			if v.Dialed == "*98" && v.HandedOff {
				return true
			}
		}
		return false
	}
	waitFor(t, 10*time.Second, handedOff, "live as handed off")
	// callctl saw the channel leave Stasis, and the call is still live.
	waitFor(t, 10*time.Second, func() bool { return l.logs.contains("in the dialplan: the call stays counted until its channel ends") },
		"StasisEnd of the handed-off caller")
	if !handedOff() || l.recs.find("2001", "*98") != nil {
		t.Fatalf("the handed-off call ended while its channel is up: live %+v", l.eng.Calls())
	}
	if !l.obs.get(caller).hungup.IsZero() {
		t.Fatal("the caller was hung up")
	}
	l.hangup("srv12", caller)
	waitFor(t, 10*time.Second, func() bool { return l.recs.find("2001", "*98") != nil }, "the record after the channel ended")
	rec := l.recs.find("2001", "*98")
	if rec.Route != routing.Feature.String() || !rec.HandedOff {
		t.Errorf("record: route %s handed off %v", rec.Route, rec.HandedOff)
	}
	l.settled(10 * time.Second)
}
