package sipp

import (
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"
)

// Call is what one SIP caller does.
type Call struct {
	// Server is the media server's SIP address (127.0.0.1:5060).
	Server string
	// Port is the caller's own SIP port on 127.0.0.1: the media server
	// tells phones, the PSTN and trunks apart by it.
	Port int
	// From is the user part of the From header (the caller's number),
	// FromName its display name (may be empty).
	From, FromName string
	// Dialed is the user part of the request URI, as written: hostile
	// strings are sent as they are (no brackets or line breaks).
	Dialed string
	// Headers are added to the INVITE ("Privacy: id").
	Headers []string
	// Hold: once answered, the caller hangs up after Hold; 0 waits for the
	// far end to hang up (up to Limit).
	Hold time.Duration
	// CancelAfter > 0: the caller gives up (CANCEL) this long after the
	// provisional response RingBack (180 or 183: which one the media server
	// sends for ringing).
	CancelAfter time.Duration
	RingBack    int
	// Limit bounds the whole call (60 s when 0).
	Limit time.Duration
	// ReferTo (a SIP URI): once answered and ReferAfter later, the caller
	// transfers the party it called blind (an in-dialog REFER), answers
	// the NOTIFYs, and after the final one waits 1.5 s for a BYE before it
	// hangs up itself, as a phone does after a transfer
	// (../shared/traces/transfers/sipp/caller_uac_refer.xml).
	ReferTo    string
	ReferAfter time.Duration
}

// Result is what the caller experienced.
type Result struct {
	// Final is the final response to the INVITE (200, 486, 404, 487...),
	// 0 when none came.
	Final int
	// Reason is the Q.850 cause of the final response's Reason header, if any.
	Reason string
	// Provisional lists the provisional responses in order (100, 180, 183).
	Provisional []int
	// Invited is when the INVITE left, Answered when the 200 came, Ended
	// when the dialog ended (BYE either way, or the final failure).
	Invited, Answered, Ended time.Time
	// HungUpByFar: the media server sent the BYE.
	HungUpByFar bool
	// CancelSent: the caller gave up with a CANCEL.
	CancelSent time.Time
	Messages   []Message
}

// Caller is a call in progress.
type Caller struct {
	spec Call
	p    *proc
}

// Start places the call with its own sipp process; dir holds its scenario
// and logs.
func Start(ctx context.Context, dir string, c Call) (*Caller, error) {
	if c.Limit <= 0 {
		c.Limit = 60 * time.Second
	}
	if c.CancelAfter > 0 && c.RingBack != 180 && c.RingBack != 183 {
		return nil, fmt.Errorf("sipp caller: CancelAfter needs RingBack 180 or 183, not %d", c.RingBack)
	}
	if c.ReferTo != "" && c.CancelAfter > 0 {
		return nil, fmt.Errorf("sipp caller: a call that is cancelled cannot transfer")
	}
	for _, s := range append([]string{c.From, c.FromName, c.Dialed, c.ReferTo}, c.Headers...) {
		if _, err := xmlText(s); err != nil {
			return nil, err
		}
	}
	if err := portFree(c.Port); err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := callerScenario.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("sipp caller scenario: %w", err)
	}
	name := fmt.Sprintf("caller-%d-%d", c.Port, time.Now().UnixNano())
	p, err := start(ctx, dir, name, b.String(), "-i", "127.0.0.1", "-p", fmt.Sprint(c.Port), "-m", "1", "-aa",
		"-timeout", fmt.Sprintf("%ds", int(c.Limit/time.Second)+5), "-timeout_error", c.Server)
	if err != nil {
		return nil, err
	}
	return &Caller{spec: c, p: p}, nil
}

// Place places the call and waits for its end.
func Place(ctx context.Context, dir string, c Call) (*Result, error) {
	cl, err := Start(ctx, dir, c)
	if err != nil {
		return nil, err
	}
	return cl.Wait(ctx)
}

// Messages is what the caller sent and received so far.
func (c *Caller) Messages() []Message {
	m, _ := c.p.messages()
	return m
}

// Answered says whether the call was answered so far.
func (c *Caller) Answered() bool {
	msgs := c.Messages()
	callID := ""
	for _, m := range msgs {
		if m.Sent && m.Method() == "INVITE" {
			callID = m.Header("Call-ID")
			break
		}
	}
	for _, m := range msgs {
		if m.Header("Call-ID") != callID {
			continue
		}
		if !m.Sent && m.Status() == 200 && m.CSeqMethod() == "INVITE" {
			return true
		}
	}
	return false
}

// Wait waits for the call to end and reads what happened.
func (c *Caller) Wait(ctx context.Context) (*Result, error) {
	if err := c.p.wait(ctx); err != nil {
		return nil, fmt.Errorf("sipp caller %s -> %s: %w", c.spec.From, c.spec.Dialed, err)
	}
	msgs, err := c.p.messages()
	if err != nil {
		return nil, err
	}
	r := &Result{Messages: msgs}
	// Only this call's messages: a server may still retransmit the final
	// response of an earlier call on the same port.
	callID := ""
	for _, m := range msgs {
		if m.Sent && m.Method() == "INVITE" {
			callID = m.Header("Call-ID")
			break
		}
	}
	for _, m := range msgs {
		if m.Header("Call-ID") != callID {
			continue
		}
		switch {
		case m.Sent && m.Method() == "INVITE" && r.Invited.IsZero():
			r.Invited = m.At
		case m.Sent && m.Method() == "CANCEL":
			r.CancelSent = m.At
		case !m.Sent && m.CSeqMethod() == "INVITE" && m.Status() >= 100 && m.Status() < 200:
			r.Provisional = append(r.Provisional, m.Status())
		case !m.Sent && m.CSeqMethod() == "INVITE" && m.Status() >= 200 && r.Final == 0:
			r.Final = m.Status()
			if v := m.Header("Reason"); v != "" {
				if _, cause, ok := strings.Cut(v, "cause="); ok {
					r.Reason, _, _ = strings.Cut(cause, ";")
				}
			}
			if r.Final == 200 {
				r.Answered = m.At
			} else {
				r.Ended = m.At
			}
		case m.Method() == "BYE" && r.Ended.IsZero():
			r.Ended = m.At
			r.HungUpByFar = !m.Sent
		}
	}
	if r.Final == 0 {
		return r, fmt.Errorf("sipp caller %s -> %s: no final response (sipp: %s)", c.spec.From, c.spec.Dialed, c.p.tail())
	}
	return r, nil
}

// Notifies are the statuses of the sipfrags of the NOTIFYs the caller
// received about its REFER (100, 200, 503, 603), in order.
func (c *Caller) Notifies() []int { return notifies(c.Messages()) }

// Ended says whether sipp is done with the call.
func (c *Caller) Ended() bool {
	select {
	case <-c.p.done:
		return true
	default:
		return false
	}
}

// Stop ends the sipp process (the call is abandoned without signalling).
func (c *Caller) Stop() { c.p.kill(); <-c.p.done }

// Dir is where the call's scenario and logs are.
func (c *Caller) Dir() string { return c.p.dir }

func ms(d time.Duration) int64 { return d.Milliseconds() }

// Failure codes the caller acknowledges; any other final response is
// unexpected for sipp, which then aborts the call (still logged).
var failureCodes = []int{400, 403, 404, 408, 410, 480, 481, 484, 486, 487, 488, 500, 501, 502, 503, 504, 600, 603, 604}

var callerScenario = template.Must(template.New("caller").Funcs(template.FuncMap{"ms": ms, "codes": func() []int { return failureCodes }}).Parse(`<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="callctl test caller">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{{.Dialed}}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {{if .FromName}}"{{.FromName}}" {{end}}<sip:{{.From}}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{{.Dialed}}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{{.From}}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, OPTIONS
{{range .Headers}}      {{.}}
{{end}}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
{{if .CancelAfter}}  <recv response="100" optional="true"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/></action></recv>
  <recv response="{{.RingBack}}"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/></action></recv>
  <pause milliseconds="{{ms .CancelAfter}}"/>
  <send>
    <![CDATA[
      CANCEL sip:{{.Dialed}}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[$invbranch]
      From: {{if .FromName}}"{{.FromName}}" {{end}}<sip:{{.From}}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{{.Dialed}}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" optional="true"/>
{{else}}  <recv response="100" optional="true"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/></action></recv>
{{end}}  <recv response="180" optional="true"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/></action></recv>
  <recv response="183" optional="true"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/></action></recv>
{{range codes}}  <recv response="{{.}}" optional="true" next="failed"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/></action></recv>
{{end}}  <recv response="200"><action><ereg regexp="z9hG4bK[^;,]*" search_in="hdr" header="Via:" check_it="true" assign_to="invbranch"/><ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="rtarget"/>{{if .ReferTo}}<ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="rto"/>{{end}}</action></recv>
  <label id="answered"/>
  <send>
    <![CDATA[
      ACK [$rtarget] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {{if .FromName}}"{{.FromName}}" {{end}}<sip:{{.From}}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{{.From}}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
{{if .ReferTo}}  <pause milliseconds="{{ms .ReferAfter}}"/>
  <send retrans="500">
    <![CDATA[
      REFER [$rtarget] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {{if .FromName}}"{{.FromName}}" {{end}}<sip:{{.From}}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: [$rto]
      Call-ID: [call_id]
      CSeq: 2 REFER
      Contact: <sip:{{.From}}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Refer-To: <{{.ReferTo}}>
      Referred-By: <sip:{{.From}}@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="202"/>
  <label id="rwait"/>
  <recv request="NOTIFY" optional="true" next="rnotify" timeout="8000" ontimeout="hangup"><action><ereg regexp="SIP/2.0 [2-6][0-9][0-9]" search_in="body" assign_to="final"/></action></recv>
  <recv request="BYE" next="bye"/>
  <label id="rnotify"/>
  <send next="rfinal" test="final">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="NOTIFY" optional="true" next="rnotify" timeout="8000" ontimeout="hangup"><action><ereg regexp="SIP/2.0 [2-6][0-9][0-9]" search_in="body" assign_to="final"/></action></recv>
  <recv request="BYE" next="bye"/>
  <label id="rfinal"/>
  <recv request="BYE" next="bye" timeout="1500" ontimeout="hangup"/>
{{end}}  <label id="up"/>
  <recv request="BYE" optional="true" timeout="{{if .Hold}}{{ms .Hold}}{{else}}{{ms .Limit}}{{end}}" ontimeout="hangup" next="bye"/>
  <recv request="INVITE"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:{{.From}}@[local_ip]:[local_port]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK"/>
  <nop next="up"/>
  <label id="bye"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop next="end"/>
  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
      BYE [$rtarget] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: {{if .FromName}}"{{.FromName}}" {{end}}<sip:{{.From}}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      {{if .ReferTo}}To: [$rto]{{else}}[last_To:]{{end}}
      Call-ID: [call_id]
      CSeq: {{if .ReferTo}}3{{else}}2{{end}} BYE
      Contact: <sip:{{.From}}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <nop next="end"/>
  <label id="failed"/>
  <send>
    <![CDATA[
      ACK sip:{{.Dialed}}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[$invbranch]
      From: {{if .FromName}}"{{.FromName}}" {{end}}<sip:{{.From}}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
  <pause milliseconds="50"/>
</scenario>
`))
