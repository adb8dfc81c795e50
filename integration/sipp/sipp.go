// Package sipp runs real SIP callers and phones for callctl's tests with
// sipp (https://github.com/SIPp/sipp): what a caller hears (the final SIP
// response, 180 or 183, a BYE) and what a phone displays (the INVITE's From)
// are then the media servers' real SIP, not a Local or loopback channel's
// cause, which is not what a phone sees.
//
// A Caller is one sipp UAC process per call, with a scenario written for it
// (the times and numbers baked in, so sipp's own keywords never see test
// data). Phones is one sipp UAS process that answers every INVITE by the
// first digit of the number it is sent to, as the lab's targets context
// does: 2XX busy (486), 3XX rings until cancelled (180, then 487), anything
// else answers (200) and stays until the far end hangs up. Both log every
// message with sipp's -trace_msg; the package reads those logs.
package sipp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Available says whether sipp is installed.
func Available() error {
	if _, err := exec.LookPath("sipp"); err != nil {
		return errors.New("sipp is not installed (Debian package sip-tester; integration/lab/lab.sh install)")
	}
	return nil
}

// Message is one SIP message sipp sent or received.
type Message struct {
	At   time.Time
	Sent bool
	// First is the request or status line.
	First   string
	Headers map[string][]string // canonical names as sent (From, To, Call-ID, ...)
	// Body is the message body, its lines joined with "\n".
	Body string
}

// Method is the request's method, "" for a response.
func (m Message) Method() string {
	if strings.HasPrefix(m.First, "SIP/2.0 ") {
		return ""
	}
	method, _, _ := strings.Cut(m.First, " ")
	return method
}

// Status is the response's code, 0 for a request.
func (m Message) Status() int {
	rest, ok := strings.CutPrefix(m.First, "SIP/2.0 ")
	if !ok {
		return 0
	}
	var code int
	fmt.Sscan(rest, &code)
	return code
}

// Header is the first value of a header, "" when absent.
func (m Message) Header(name string) string {
	for k, v := range m.Headers {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// CSeqMethod is the method of the CSeq header ("INVITE" of "1 INVITE").
func (m Message) CSeqMethod() string {
	f := strings.Fields(m.Header("CSeq"))
	if len(f) == 2 {
		return f[1]
	}
	return ""
}

// Party is a From or To header read: the display name and the URI's user.
type Party struct {
	Name, User string
}

// ParseParty reads `"Aiko Sato" <sip:113999@host>;tag=x`.
func ParseParty(h string) Party {
	var p Party
	if i := strings.IndexByte(h, '<'); i >= 0 {
		p.Name = strings.Trim(strings.TrimSpace(h[:i]), `"`)
		h = h[i+1:]
		if j := strings.IndexByte(h, '>'); j >= 0 {
			h = h[:j]
		}
	} else if j := strings.IndexByte(h, ';'); j >= 0 {
		h = h[:j]
	}
	h = strings.TrimPrefix(strings.TrimPrefix(h, "sip:"), "sips:")
	if at := strings.IndexByte(h, '@'); at >= 0 {
		p.User = h[:at]
	}
	return p
}

// RequestUser is the user part of a request's URI.
func (m Message) RequestUser() string {
	f := strings.Fields(m.First)
	if len(f) < 2 {
		return ""
	}
	return ParseParty("<" + f[1] + ">").User
}

// readMessages parses a sipp -trace_msg file. Each message follows a line
// of dashes with a timestamp and "UDP message received [n] bytes :" or
// "UDP message sent (n bytes):"; sipp's reports of unexpected messages
// (without a timestamp) repeat a message already logged and are skipped.
func readMessages(path string) ([]Message, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []Message
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cur *Message
	state := 0 // 0 outside, 1 after a dated separator, 2 in headers, 3 in body
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(line, "------------------------------") {
			if cur != nil {
				out = append(out, *cur)
				cur = nil
			}
			state = 0
			stamp := strings.TrimSpace(strings.TrimLeft(line, "-"))
			if at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", stamp, time.Local); err == nil {
				cur = &Message{At: at, Headers: map[string][]string{}}
				state = 1
			}
			continue
		}
		switch state {
		case 1:
			switch {
			case strings.HasPrefix(line, "UDP message received"):
			case strings.HasPrefix(line, "UDP message sent"):
				cur.Sent = true
			case line == "":
				continue
			default:
				cur.First = line
				state = 2
			}
		case 2:
			if line == "" {
				state = 3
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok {
				k = strings.TrimSpace(k)
				cur.Headers[k] = append(cur.Headers[k], strings.TrimSpace(v))
			}
		case 3:
			if cur.Body != "" {
				cur.Body += "\n"
			}
			cur.Body += line
		}
	}
	if cur != nil && cur.First != "" {
		out = append(out, *cur)
	}
	return out, sc.Err()
}

// proc is a running sipp.
type proc struct {
	cmd    *exec.Cmd
	dir    string
	msgs   string
	done   chan struct{}
	err    error
	output bytes.Buffer
}

func start(ctx context.Context, dir, name, scenario string, args ...string) (*proc, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	sf := filepath.Join(dir, name+".xml")
	if err := os.WriteFile(sf, []byte(scenario), 0o644); err != nil {
		return nil, err
	}
	p := &proc{dir: dir, msgs: filepath.Join(dir, name+".messages.log"), done: make(chan struct{})}
	all := append([]string{"-sf", sf, "-nostdin", "-trace_msg", "-message_file", p.msgs,
		"-trace_err", "-error_file", filepath.Join(dir, name+".errors.log")}, args...)
	p.cmd = exec.Command("sipp", all...)
	p.cmd.Dir = dir
	p.cmd.Stdout = &p.output
	p.cmd.Stderr = &p.output
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("sipp: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			p.kill()
		case <-p.done:
		}
	}()
	return p, nil
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
}

// wait waits for sipp to exit; its exit status is reported by the caller
// of wait as it sees fit (a failed call is an outcome, not an error).
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		p.kill()
		<-p.done
		return ctx.Err()
	}
}

func (p *proc) messages() ([]Message, error) { return readMessages(p.msgs) }

// tail is the end of sipp's own output, for error messages.
func (p *proc) tail() string {
	s := strings.TrimSpace(p.output.String())
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return s
}

// xmlText makes s safe inside the scenario's CDATA and away from sipp's
// keywords ([...]).
func xmlText(s string) (string, error) {
	if strings.ContainsAny(s, "[]\r\n") || strings.Contains(s, "]]>") {
		return "", fmt.Errorf("sipp: %q cannot be put into a scenario (brackets or line breaks)", s)
	}
	return s, nil
}
