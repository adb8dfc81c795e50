package freeswitch

import (
	"runtime"
	"testing"
	"time"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func TestSmokeLocalCall(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		l := newTestLab(t, labOptions{})
		defer l.close()
		l.fleet.SetPhone("srv11", "3998", callmodel.Answer(50*time.Millisecond))
		uuid := l.call("srv11", "3999", "Aiko Sato", "3998", callmodel.CallerPlan{HangupAfterAnswer: 200 * time.Millisecond})
		cause := l.waitHangup(uuid, 10*time.Second)
		if cause != "NORMAL_CLEARING" {
			t.Errorf("caller hangup cause %q", cause)
		}
		rings := l.fleet.RingsOf("srv11", "3998")
		if len(rings) != 1 || rings[0].Outcome != callmodel.OutcomeAnswered {
			t.Fatalf("rings of 3998: %+v", rings)
		}
		l.waitIdle(10 * time.Second)
	}()
	checkGoroutines(t, base)
}
