package sipp

import (
	"context"
	"fmt"
	"net"
	"time"
)

// portFree says why sipp could not listen on a UDP port of 127.0.0.1.
func portFree(port int) error {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return fmt.Errorf("SIP port 127.0.0.1:%d is taken (another sipp or lab still running?): %w", port, err)
	}
	return c.Close()
}

// Phones is a farm of SIP phones on one port: every INVITE it gets is a
// phone ringing, and the number it is sent to says what the phone does
// (see the package documentation).
type Phones struct {
	p    *proc
	Port int
}

// StartPhones starts the phones on 127.0.0.1:port; dir holds the scenario
// and the message log.
func StartPhones(ctx context.Context, dir string, port int) (*Phones, error) {
	if err := portFree(port); err != nil {
		return nil, err
	}
	// -aa answers INFO, NOTIFY, OPTIONS and UPDATE by itself.
	p, err := start(ctx, dir, fmt.Sprintf("phones-%d", port), phonesScenario, "-i", "127.0.0.1", "-p", fmt.Sprint(port), "-aa")
	if err != nil {
		return nil, err
	}
	// sipp binds its port at once; a phone that is not there yet would make
	// the first INVITE fail, so wait until the process is still up a moment
	// later and its log exists or it is plainly listening.
	select {
	case <-p.done:
		return nil, fmt.Errorf("sipp phones on port %d exited: %s", port, p.tail())
	case <-time.After(300 * time.Millisecond):
	}
	return &Phones{p: p, Port: port}, nil
}

// Ring is one INVITE a phone received: who the phone displays and when.
type Ring struct {
	At time.Time
	// Number is the number the phone was called on (the request URI's user).
	Number string
	// From is the caller the phone displays (From header).
	From Party
	// PAI is the P-Asserted-Identity, if any.
	PAI    Party
	CallID string
}

// Rings lists the INVITEs the phones received, in order (retransmissions
// once).
func (ph *Phones) Rings() []Ring {
	msgs, _ := ph.p.messages()
	var out []Ring
	seen := map[string]bool{}
	for _, m := range msgs {
		if m.Sent || m.Method() != "INVITE" {
			continue
		}
		key := m.Header("Call-ID") + " " + m.Header("CSeq")
		if seen[key] {
			continue
		}
		seen[key] = true
		r := Ring{At: m.At, Number: m.RequestUser(), From: ParseParty(m.Header("From")), CallID: m.Header("Call-ID")}
		if v := m.Header("P-Asserted-Identity"); v != "" {
			r.PAI = ParseParty(v)
		}
		out = append(out, r)
	}
	return out
}

// RingsOf lists the rings of one number.
func (ph *Phones) RingsOf(number string) []Ring {
	var out []Ring
	for _, r := range ph.Rings() {
		if r.Number == number {
			out = append(out, r)
		}
	}
	return out
}

// Messages is everything the phones sent and received.
func (ph *Phones) Messages() []Message {
	m, _ := ph.p.messages()
	return m
}

// Close stops the phones.
func (ph *Phones) Close() {
	ph.p.kill()
	<-ph.p.done
}

const phonesScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- callctl's SIP phones: the first digit of the number dialed decides, as in the lab's
     targets context: 2XX busy (486), 3XX rings until cancelled (180, 487), anything else
     answers (180, 200), takes re-INVITEs, and stays until the far end hangs up. -->
<scenario name="callctl lab phones">
  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp="[0-9]" search_in="hdr" header="To:" check_it="true" assign_to="kind"/>
      <ereg regexp=".*" search_in="hdr" header="CSeq:" check_it="true" assign_to="cseq"/>
      <todouble assign_to="k" variable="kind"/>
      <test assign_to="busy" variable="k" compare="equal" value="2"/>
      <test assign_to="rings" variable="k" compare="equal" value="3"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 100 Trying
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <nop next="busy" test="busy"/>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <nop next="ring" test="rings"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
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
  <recv request="ACK" crlf="true"/>
  <label id="up"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="BYE"/>
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

  <label id="reinvite"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
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

  <label id="busy"/>
  <send>
    <![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <nop next="end"/>

  <label id="ring"/>
  <recv request="CANCEL"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <send>
    <![CDATA[
      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      CSeq: [$cseq]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <label id="end"/>
  <pause milliseconds="10"/>
</scenario>
`
