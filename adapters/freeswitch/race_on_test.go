//go:build race

package freeswitch

const raceEnabled = true
