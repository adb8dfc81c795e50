// Package sim runs a lab of simulated media servers for callctl's tests
// and demos: FreeSWITCH servers that speak the event socket (package esl)
// and Asterisk servers that speak ARI (package ari), over one call model
// (package callmodel), with simulated phones, a simulated PSTN and trunks
// between the servers. It imports nothing of callctl: it is a second,
// independent reading of the protocols.
//
//	lab, err := sim.StartLab(ctx, sim.Config{
//		Servers: []sim.ServerConfig{
//			{Name: "fs1", Kind: "freeswitch", Controllers: []string{ctlAddr}, Trunks: map[string]string{"fs2": "fs2"}},
//			{Name: "fs2", Kind: "freeswitch", Controllers: []string{ctlAddr2}},
//		},
//		Phones: []sim.PhoneConfig{{Server: "fs2", Ext: "2099", Behaviour: sim.Behaviour{Mode: "answer", RingFor: time.Second}}},
//	})
//	defer lab.Close()
//	call, _ := lab.Call(ctx, "fs1", "3999", "122099", sim.CallOptions{})
//	peer, _ := call.WaitBridged(ctx)
//	rings := lab.Rings("fs2", "2099") // who rang, with which caller id and headers
//	res, _ := call.WaitEnded(ctx)     // cause, SIP status, answer and end times
//
// The lab convention of the recorded lab holds on every server: the
// targets context (loopback/NXX/targets, Local/NXX@targets) has 1XX answer
// and hang up after 30 s, 2XX busy, 3XX ring, 4XX fail, 5XX answer and
// stay. Calls from phones arrive in context default (FreeSWITCH) /
// from-sipp (Asterisk), calls from the PSTN and over trunks in public /
// from-pstn / from-trunk, and the server hands them to the controller:
// FreeSWITCH runs "socket <controller> async full" for each configured
// controller in turn, then hangs up DESTINATION_OUT_OF_ORDER; Asterisk
// runs Stasis.
//
// Fault injection: DropConnections, Restart, Refuse, SendMalformed, and a
// phone's transfers: BlindTransfer (the double outbound connection
// FreeSWITCH makes after a transfer; Asterisk's Local stand-in) and
// AttendedTransfer (a REFER with Replaces: FreeSWITCH joins the legs,
// Asterisk links the two calls with a Local pair), and on FreeSWITCH the
// phone's own att_xfer (AttXfer; RecvDTMF "#" cancels it). Close stops everything and leaves no goroutine behind.
package sim
