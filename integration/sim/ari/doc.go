// Package ari simulates the Asterisk REST Interface of Asterisk 22 for
// callctl's tests.
package ari
