package asterisk

import (
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/hunt"
)

// Q.850 causes as Asterisk reports them in ChannelDestroyed.cause, for the
// ones callctl sends itself.
const (
	causeUnknown    = 0
	causeNormal     = 16
	causeOutOfOrder = 27
)

// causeName is the record name of a Q.850 cause.
func causeName(c int) string { return controller.CauseName(c) }

// outcomeOf maps how an unanswered attempt ended to a hunt outcome, through
// the controller's one reading of causes and dial statuses.
//
// cause is ChannelDestroyed.cause of the channel callctl originated. With
// Local channels Asterisk destroys that half with cause 0 when the callee
// was busy or congested (traces b and j): then Dial.dialstatus says what
// happened, and failing that, the cause of the ;2 half (cause2).
func outcomeOf(cause int, dialStatus string, cause2 int) (hunt.Outcome, string) {
	if o, ok := controller.CauseOutcome(causeName(cause)); ok {
		return o, causeName(cause)
	}
	if o, name, ok := controller.DialStatusOutcome(dialStatus); ok && o != hunt.Answered {
		return o, name
	}
	if o, ok := controller.CauseOutcome(causeName(cause2)); ok {
		return o, causeName(cause2)
	}
	if dialStatus != "" {
		return hunt.Failed, dialStatus
	}
	return hunt.Failed, causeName(cause)
}
