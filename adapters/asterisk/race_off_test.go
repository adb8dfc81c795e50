//go:build !race

package asterisk

const raceEnabled = false
