// Package esl is callctl's FreeSWITCH Event Socket client.
//
// It reads and writes frames (Reader, Frame, ParseEvent, and AppendCommand
// and friends, which refuse any part that would change a command's
// meaning), and runs connections of both kinds:
//
//   - Dial opens an inbound connection (FreeSWITCH's :8021): greeting,
//     auth, "event plain ..." and filters.
//   - Accept and Subscribe run the start of an outbound one (the dialplan's
//     socket application connected to us): connect, whose reply is the
//     channel data, then myevents and linger.
//
// A Conn has one reader goroutine that hands every event, in the order
// FreeSWITCH sent it, to one Handler; each command gets exactly one reply,
// matched in order (Send, Command, API); BGAPI sends the caller's Job-UUID
// and waits for that job's BACKGROUND_JOB. Every blocking call takes a
// context. A Conn never reconnects: its Handler learns that it closed, and
// the code that opened it decides what comes next.
//
// From eslgo v1.5.2 only the command types are used, to format the setup
// commands (see client.go). Its connection and its frame reader are not:
// its command replies are taken from a channel shared by all callers
// (concurrent commands swap replies; a late reply goes to the next
// caller), its event listeners run one goroutine per event (a channel's
// events are handled out of order), its reader panics on a negative
// Content-Length and allocates whatever length a peer announces, its
// outbound listener cannot be stopped, and its inbound connection does not
// reconnect.
//
// Package esltest plays FreeSWITCH's side of a connection for tests.
package esl
