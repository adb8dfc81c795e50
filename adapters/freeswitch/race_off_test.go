//go:build !race

package freeswitch

const raceEnabled = false
