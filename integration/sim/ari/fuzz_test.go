package ari

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzREST throws arbitrary methods, paths, queries and bodies at the REST
// router of a server with live channels: it must never panic, and every
// reply is either empty (204) or a JSON document.
func FuzzREST(f *testing.F) {
	for _, seed := range []struct{ method, target, body string }{
		{"POST", "/ari/channels?endpoint=Local/101@targets&app=controller&channelId=x", ""},
		{"POST", "/ari/channels/create?endpoint=Local/201@targets&app=controller", `{"variables":{"A":"b"}}`},
		{"POST", "/ari/channels", `{"endpoint":"PJSIP/2001","app":"controller","variables":{"PJSIP_HEADER(add,X-A)":"1"}}`},
		{"DELETE", "/ari/channels/fixed?reason_code=17", ""},
		{"POST", "/ari/channels/fixed/continue?context=targets&extension=201", ""},
		{"POST", "/ari/channels/fixed/variable?variable=CALLERID(all)&value=%22A%22%20%3C1%3E", ""},
		{"GET", "/ari/channels/fixed/variable?variable=PJSIP_HEADER(read,X-A)", ""},
		{"POST", "/ari/bridges/b/addChannel?channel=fixed,,x", ""},
		{"POST", "/ari/applications/controller/subscription?eventSource=channel:fixed,bridge:b,endpoint:PJSIP/2001", ""},
		{"POST", "/ari/channels/fixed/transfer_progress?states=channel_answered", ""},
		{"GET", "/ari/endpoints/PJSIP/2001", ""},
		{"PUT", "/ari/%zz/../channels//x", `{"variables":[1,2]}`},
		{"POST", "/ari/channels?timeout=-5&priority=x", `not json`},
	} {
		f.Add(seed.method, seed.target, seed.body)
	}
	n := newTestNet("ast1")
	n.setPhone("2001", phone{mode: phoneAnswer})
	s, err := New(Config{SystemName: "ast1", Network: n})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	if _, err := s.Inbound(InboundCall{ChannelID: "fixed", Endpoint: "2001", Context: "targets", Exten: "501",
		Caller: Party{Number: "2001"}, Leg: newSIPCaller()}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		if !strings.HasPrefix(target, "/") {
			target = "/" + target
		}
		req, err := http.NewRequest(method, "http://127.0.0.1"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.SetBasicAuth("ari", "ari")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		out := bytes.TrimSpace(rec.Body.Bytes())
		if rec.Code == http.StatusNoContent {
			if len(out) != 0 {
				t.Fatalf("%s %s: 204 with a body %q", method, target, out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s %s: status %d with invalid JSON %q", method, target, rec.Code, out)
		}
	})
}
