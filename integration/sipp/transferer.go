package sipp

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// StartTransferer starts, on 127.0.0.1:port, a phone that answers each call
// and then transfers the caller blind to referTo (a SIP URI,
// sip:122099@127.0.0.1:5060) with a REFER, as a phone user pressing
// transfer would. Its Rings show what it displayed.
func StartTransferer(ctx context.Context, dir string, port int, referTo string) (*Phones, error) {
	if err := portFree(port); err != nil {
		return nil, err
	}
	if _, err := xmlText(referTo); err != nil {
		return nil, err
	}
	p, err := start(ctx, dir, fmt.Sprintf("transferer-%d", port), transfererScenario, "-i", "127.0.0.1",
		"-p", fmt.Sprint(port), "-key", "refer_to", referTo)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return nil, fmt.Errorf("sipp transferer on port %d exited: %s", port, p.tail())
	case <-time.After(300 * time.Millisecond):
	}
	return &Phones{p: p, Port: port}, nil
}

// Notifies are the statuses of the sipfrags of the NOTIFYs the phones
// received about their REFERs (100, 200, 503, 603), in order.
func (ph *Phones) Notifies() []int { return notifies(ph.Messages()) }

// notifies are the statuses of the sipfrags of the NOTIFYs among msgs.
func notifies(msgs []Message) []int {
	var out []int
	for _, m := range msgs {
		if m.Sent || m.Method() != "NOTIFY" {
			continue
		}
		frag, ok := strings.CutPrefix(strings.TrimSpace(m.Body), "SIP/2.0 ")
		if !ok || len(frag) < 3 {
			continue
		}
		if n, err := strconv.Atoi(frag[:3]); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// HungUp says whether a BYE of the phones' calls was answered (either way).
func (ph *Phones) HungUp() bool { return ph.hungUp("") }

// HungUpCall says whether a BYE of the phones' call callID (a Ring's) was
// answered (either way).
func (ph *Phones) HungUpCall(callID string) bool { return callID != "" && ph.hungUp(callID) }

// hungUp: a BYE of call callID (any call: "") was answered.
func (ph *Phones) hungUp(callID string) bool {
	byes := map[string]bool{}
	for _, m := range ph.Messages() {
		id := m.Header("Call-ID")
		if callID != "" && id != callID {
			continue
		}
		if m.Method() == "BYE" {
			byes[id] = true
		}
		if m.Status() == 200 && m.CSeqMethod() == "BYE" && byes[id] {
			return true
		}
	}
	return false
}

const transfererScenario = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<!-- A phone that answers and, 2 s later, transfers the caller blind: an in-dialog REFER with
     Refer-To [refer_to] (-key refer_to sip:<number>@<server>). It answers NOTIFYs (sipfrag)
     until a final one, waits 1.5 s for the server's BYE and hangs up itself otherwise.
     From the lab's recordings (../shared/traces/transfers/sipp/phone_uas_refer.xml). -->
<scenario name="phone UAS that sends a blind REFER">
  <recv request="INVITE" crlf="true">
    <action>
      <!-- remote target (Contact), and the From/To of the INVITE: the REFER swaps them -->
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="rtarget"/>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="ifrom"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="ito"/>
    </action>
  </recv>
  <send>
    <![CDATA[
      SIP/2.0 180 Ringing
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Allow: INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <!-- 2 s in the call, answering re-INVITEs (Asterisk updates the connected line), then the
       REFER. -->
  <label id="talk"/>
  <recv request="INVITE" optional="true" timeout="2000" ontimeout="refer" next="reinvite"/>
  <recv request="BYE" next="bye"/>
  <label id="reinvite"/>
  <send retrans="500">
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=phone 53655765 2353687638 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

    ]]>
  </send>
  <recv request="ACK" next="talk"/>
  <label id="refer"/>

  <send retrans="500">
    <![CDATA[
      REFER [$rtarget] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$ito];tag=[pid]SIPpTag01[call_number]
      To: [$ifrom]
      Call-ID: [call_id]
      CSeq: 1 REFER
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Refer-To: <[refer_to]>
      Referred-By: <sip:phone@[local_ip]:[local_port]>
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="202"/>

  <!-- NOTIFYs (sipfrag) are answered 200 until one carries a final status (SIP/2.0 2xx-6xx);
       a BYE from the server is answered at any time. No NOTIFY/BYE for 8 s: hang up. -->
  <label id="wait"/>
  <recv request="NOTIFY" optional="true" next="notify" timeout="8000" ontimeout="sendbye">
    <action>
      <ereg regexp="SIP/2.0 [2-6][0-9][0-9]" search_in="body" assign_to="final"/>
    </action>
  </recv>
  <recv request="BYE" next="bye"/>

  <label id="notify"/>
  <send next="final" test="final">
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
  <!-- not final yet: the same receive group again (no <nop> here: a NOTIFY that arrives
       while sipp sits on a nop is "unexpected" and aborts the call) -->
  <recv request="NOTIFY" optional="true" next="notify" timeout="8000" ontimeout="sendbye">
    <action>
      <ereg regexp="SIP/2.0 [2-6][0-9][0-9]" search_in="body" assign_to="final"/>
    </action>
  </recv>
  <recv request="BYE" next="bye"/>

  <!-- final NOTIFY seen: give the server 1.5 s to send BYE itself, otherwise hang up
       (what a phone does after a successful blind transfer) -->
  <label id="final"/>
  <recv request="BYE" next="bye" timeout="1500" ontimeout="sendbye"/>

  <label id="bye"/>
  <send next="end">
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

  <label id="sendbye"/>
  <send retrans="500">
    <![CDATA[
      BYE [$rtarget] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$ito];tag=[pid]SIPpTag01[call_number]
      To: [$ifrom]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Contact: <sip:phone@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>

  <!-- a NOTIFY that arrives after the dialog ended (seen from Asterisk) is still answered.
       Never jump to the very end of a scenario: sipp counts that as a failed, aborted call. -->
  <label id="end"/>
  <recv request="NOTIFY" timeout="1500" ontimeout="done"/>
  <send next="end">
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
  <label id="done"/>
  <pause milliseconds="10"/>
</scenario>
`
