package esl

import (
	"testing"
	"time"
)

// FreeSWITCH ends an originate when the epoch second has advanced
// originate_timeout times, up to a second early: the recorded trace c
// (originate_timeout=5) rang from ...138.096832 to ...143.016848.
func TestOriginateTimeoutCountsWholeSeconds(t *testing.T) {
	created := time.UnixMicro(1795306138096832)
	got := created.Add(wholeSecondTimeout(created, 5*time.Second))
	if want := time.Unix(1795306143, 0); !got.Equal(want) {
		t.Errorf("originate_timeout=5 from %s ends at %s, want %s as recorded (4.92 s)", created, got, want)
	}
	for _, frac := range []time.Duration{0, time.Millisecond, 500 * time.Millisecond, 999 * time.Millisecond} {
		now := time.Unix(1000, 0).Add(frac)
		if d := wholeSecondTimeout(now, 3*time.Second); d > 3*time.Second || d <= 2*time.Second {
			t.Errorf("3 s from %s: %s, want in (2 s, 3 s]", frac, d)
		}
	}
}
