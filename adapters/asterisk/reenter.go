package asterisk

import (
	"strconv"
	"time"

	"github.com/callctl/callctl/controller/routing"
)

// A caller's channel can come back into the application after it left it
// alive: something else sent it on in the dialplan (an AMI Redirect, a
// /continue by another ARI application, an IVR the call was handed to that
// ends in Goto or Transfer), and the dialplan there runs Stasis again.
// Asterisk then starts the same channel id in the application once more,
// with the new extension's arguments (traces n-continue-out-of-bridge).
// Nobody dialed that: it is the media server's own transfer of the call,
// routed as kind ivr in the call's org (SPEC §4), as a call of its own with
// its own record once the call before has let go of the channel (its
// handler ended, its counted legs released).

// leftMemory bounds how long a caller that left the application alive is
// remembered: a call comes back through the dialplan within moments, one
// that comes back much later is a new call.
const leftMemory = 2 * time.Minute

// leftCaller is a caller's channel that left the application without a
// hangup, and when.
type leftCaller struct {
	call *call
	at   time.Time
}

// noteLeft remembers a caller that left the application without a hangup.
func (c *Client) noteLeft(x *call, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, l := range c.left {
		if at.Sub(l.at) > leftMemory {
			delete(c.left, id)
		}
	}
	if c.left == nil {
		c.left = map[string]leftCaller{}
	}
	c.left[x.id] = leftCaller{call: x, at: at}
}

// takeLeft is the call a channel starting in the application again left,
// if it is remembered.
func (c *Client) takeLeft(id string, at time.Time) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.left[id]
	if !ok {
		return nil
	}
	delete(c.left, id)
	if at.Sub(l.at) > leftMemory {
		return nil
	}
	return l.call
}

// reenter handles the StasisStart of prev's caller channel coming back:
// prev ends (if a hand-off still holds it) and the channel is a new call,
// the media server's own transfer of prev's caller.
func (c *Client) reenter(e *event, at time.Time, prev *call) {
	c.mu.Lock()
	delete(c.left, prev.id)
	c.mu.Unlock()
	prev.callerGone(-1, at)
	c.newCall(e, at, nil, prev)
}

// ivrOf makes the call the media server's transfer of prev's caller: it
// passes the caller through, and the DID prev was routed as stays the one
// whose org it routes in. Dialed and Previous are written only on the
// reader goroutine, before the call's own goroutine starts.
func (x *call) ivrOf(prev *call) {
	x.entry = prev.entry + 1
	x.info.Transfer = routing.IVR
	x.info.OriginalCaller, x.info.OriginalName = x.info.Caller, x.info.CallerName
	x.info.Previous = prev.info.Previous
	if x.info.Previous == "" {
		x.info.Previous = prev.info.Dialed
	}
	x.logger().Info("the caller's channel is back in the application: the media server transferred it",
		"from_call", prev.id, "previous", x.info.Previous, "dialed", x.info.Dialed)
}

// ClaimKey names the call's hand-over for the node's fence: the channel
// id, and for a channel back in the application how many times it came
// back (each is a hand-over of its own).
func (x *call) ClaimKey() string {
	if x.entry == 0 {
		return "call:" + x.id
	}
	return "call:" + x.id + "/" + strconv.Itoa(x.entry)
}

// leftApp says whether the caller's channel left the application alive (its
// StasisEnd without a hangup) or was handed to the dialplan: only then can
// it start in the application again.
func (x *call) leftApp() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.left || x.handedOff
}
