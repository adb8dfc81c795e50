//go:build race

package asterisk

// raceEnabled: the race detector slows the simulator and callctl about
// tenfold; the long tests scale down.
const raceEnabled = true
