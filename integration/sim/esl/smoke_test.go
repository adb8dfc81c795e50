package esl

import (
	"strings"
	"testing"

	"github.com/callctl/callctl/integration/sim/callmodel"
)

func TestSmokeOriginateAnswerThenRemoteHangup(t *testing.T) {
	lab := newTestLab(t, callmodel.ScaledClock(50), testServerSpec{name: "fs1", ip: "127.0.0.11"})
	c := lab.inbound(t, "fs1")
	c.send("event plain ALL")
	if f := c.next(); f.get("Reply-Text") != "+OK event listener enabled plain" {
		t.Fatalf("event reply %v", f)
	}
	c.send("api originate loopback/101/targets &park()")
	f := c.next()
	if f.contentType() != "api/response" || !strings.HasPrefix(f.body, "+OK ") {
		t.Fatalf("originate response %v", f)
	}
	uuid := strings.TrimSpace(strings.TrimPrefix(f.body, "+OK "))
	frames := c.until(isEvent("CHANNEL_DESTROY", uuid))
	var names []string
	for _, f := range frames {
		if f.ev("Unique-ID") == uuid {
			names = append(names, f.ev("Event-Name"))
		}
	}
	t.Logf("%s", strings.Join(names, " "))
}
