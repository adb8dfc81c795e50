package esl

import (
	"errors"
	"fmt"
)

// ErrUnsafe is wrapped by errors about a command part that would change the
// meaning of the command (a line break ends a command; an empty line ends a
// frame), so it is refused rather than sent.
var ErrUnsafe = errors.New("unsafe ESL command")

// checkLine refuses control characters: CR and LF would start a new header or
// command, and no other control character has a place in a command.
func checkLine(what, s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %s contains control character %#02x", ErrUnsafe, what, c)
		}
	}
	return nil
}

// AppendCommand appends a one-line command ("api uuid_kill <uuid>") and the
// blank line that ends it. Parts are joined with spaces; none may be empty or
// contain a control character.
func AppendCommand(dst []byte, parts ...string) ([]byte, error) {
	if len(parts) == 0 {
		return dst, fmt.Errorf("%w: empty command", ErrUnsafe)
	}
	for i, p := range parts {
		if p == "" {
			return dst, fmt.Errorf("%w: empty command part %d", ErrUnsafe, i)
		}
		if err := checkLine("command", p); err != nil {
			return dst, err
		}
	}
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, p...)
	}
	return append(dst, '\n', '\n'), nil
}

// Header is one header of a multi-line command.
type Header struct{ Name, Value string }

// AppendMessage appends a command line followed by headers ("sendmsg <uuid>"
// then "call-command: execute", ...; "bgapi <cmd>" then "Job-UUID: <id>").
// Header names must be tokens; values may not contain control characters.
func AppendMessage(dst []byte, line string, headers ...Header) ([]byte, error) {
	if line == "" {
		return dst, fmt.Errorf("%w: empty command", ErrUnsafe)
	}
	if err := checkLine("command", line); err != nil {
		return dst, err
	}
	for _, h := range headers {
		if !isToken(h.Name) {
			return dst, fmt.Errorf("%w: header name %q", ErrUnsafe, h.Name)
		}
		if err := checkLine("header "+h.Name, h.Value); err != nil {
			return dst, err
		}
	}
	dst = append(dst, line...)
	dst = append(dst, '\n')
	for _, h := range headers {
		dst = append(dst, h.Name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, h.Value...)
		dst = append(dst, '\n')
	}
	return append(dst, '\n'), nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// AppendExecute appends "sendmsg [uuid]" executing app with arg. uuid may be
// empty on an outbound socket (the controlled channel). eventUUID, when set,
// comes back as Application-UUID on the app's CHANNEL_EXECUTE and
// CHANNEL_EXECUTE_COMPLETE, which identifies them exactly.
func AppendExecute(dst []byte, uuid, app, arg, eventUUID string) ([]byte, error) {
	line := "sendmsg"
	if uuid != "" {
		line += " " + uuid
	}
	if !isToken(app) {
		return dst, fmt.Errorf("%w: application name %q", ErrUnsafe, app)
	}
	hs := [4]Header{{"call-command", "execute"}, {"execute-app-name", app}}
	n := 2
	if arg != "" {
		hs[n] = Header{"execute-app-arg", arg}
		n++
	}
	if eventUUID != "" {
		hs[n] = Header{"Event-UUID", eventUUID}
		n++
	}
	return AppendMessage(dst, line, hs[:n]...)
}

// AppendHangup appends "sendmsg [uuid]" hanging the channel up with cause
// (a FreeSWITCH cause name such as USER_BUSY).
func AppendHangup(dst []byte, uuid, cause string) ([]byte, error) {
	line := "sendmsg"
	if uuid != "" {
		line += " " + uuid
	}
	if !isToken(cause) {
		return dst, fmt.Errorf("%w: hangup cause %q", ErrUnsafe, cause)
	}
	return AppendMessage(dst, line, Header{"call-command", "hangup"}, Header{"hangup-cause", cause})
}

// AppendBGAPI appends "bgapi <cmd>" with the client's own Job-UUID, so the
// BACKGROUND_JOB event can be matched without relying on reply order.
func AppendBGAPI(dst []byte, jobUUID, cmd string) ([]byte, error) {
	if !isToken(jobUUID) {
		return dst, fmt.Errorf("%w: job uuid %q", ErrUnsafe, jobUUID)
	}
	return AppendMessage(dst, "bgapi "+cmd, Header{"Job-UUID", jobUUID})
}
