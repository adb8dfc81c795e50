package esl

import (
	"errors"
	"testing"
)

func TestAppendExecute(t *testing.T) {
	got, err := AppendExecute(nil, "", "bridge", "{origination_uuid=abc}loopback/101/targets", "ev-1")
	if err != nil {
		t.Fatal(err)
	}
	want := "sendmsg\ncall-command: execute\nexecute-app-name: bridge\nexecute-app-arg: {origination_uuid=abc}loopback/101/targets\nEvent-UUID: ev-1\n\n"
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got, err = AppendHangup(nil, "u-1", "USER_BUSY")
	if err != nil || string(got) != "sendmsg u-1\ncall-command: hangup\nhangup-cause: USER_BUSY\n\n" {
		t.Errorf("hangup: %q %v", got, err)
	}
	got, err = AppendBGAPI(nil, "job-1", "show channels as json")
	if err != nil || string(got) != "bgapi show channels as json\nJob-UUID: job-1\n\n" {
		t.Errorf("bgapi: %q %v", got, err)
	}
	got, err = AppendCommand(nil, "api", "uuid_kill", "u-1", "ORIGINATOR_CANCEL")
	if err != nil || string(got) != "api uuid_kill u-1 ORIGINATOR_CANCEL\n\n" {
		t.Errorf("api: %q %v", got, err)
	}
}

// Line breaks would end the command early and let the rest be read as a
// second command: they are refused wherever they appear.
func TestCommandInjectionRefused(t *testing.T) {
	bad := []func() ([]byte, error){
		func() ([]byte, error) {
			return AppendCommand(nil, "api", "uuid_kill", "x\n\nbgapi originate user/evil &park")
		},
		func() ([]byte, error) { return AppendCommand(nil, "api", "sofia_contact", "1000\r") },
		func() ([]byte, error) { return AppendCommand(nil, "api", "") },
		func() ([]byte, error) {
			return AppendExecute(nil, "", "bridge", "user/1000\nexecute-app-name: hangup", "")
		},
		func() ([]byte, error) { return AppendExecute(nil, "", "bri dge", "x", "") },
		func() ([]byte, error) { return AppendExecute(nil, "u\n", "bridge", "x", "") },
		func() ([]byte, error) { return AppendHangup(nil, "", "USER_BUSY\ncall-command: execute") },
		func() ([]byte, error) { return AppendBGAPI(nil, "job\n", "status") },
		func() ([]byte, error) { return AppendBGAPI(nil, "job", "status\n\napi hupall") },
		func() ([]byte, error) { return AppendMessage(nil, "sendmsg", Header{"a: b\nc", "d"}) },
		func() ([]byte, error) { return AppendMessage(nil, "sendmsg", Header{"x", "tab\tnot allowed"}) },
	}
	for i, f := range bad {
		if b, err := f(); !errors.Is(err, ErrUnsafe) {
			t.Errorf("case %d: %q, %v; want ErrUnsafe", i, b, err)
		}
	}
}
