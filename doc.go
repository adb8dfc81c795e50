// Package callctl is the root of the callctl module: a call controller that owns
// the calls of FreeSWITCH and Asterisk media servers. The command lives in
// cmd/callctl, the call logic in controller/, the protocol adapters in adapters/.
package callctl
