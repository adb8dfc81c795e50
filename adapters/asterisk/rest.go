package asterisk

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// APIError is a non-2xx reply of ARI.
type APIError struct {
	Method  string
	Path    string
	Status  int
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("ARI %s %s: status %d", e.Method, e.Path, e.Status)
	}
	return fmt.Sprintf("ARI %s %s: status %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// statusOf returns the HTTP status of an ARI error, 0 for anything else
// (transport errors, cancelled contexts).
func statusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// maxBody bounds what callctl reads of a REST reply: GET /channels on a busy
// server is the largest, about 1 KiB per channel.
const maxBody = 64 << 20

// restClient speaks ARI's REST half. Every request takes a context (the ARI
// libraries' REST calls do not, so a caller that hangs up cannot cancel
// them); errors carry Asterisk's own message.
type restClient struct {
	base string // http://host:port/ari
	auth string // "Basic ..."
	hc   *http.Client
}

func newREST(base, user, password string, hc *http.Client) *restClient {
	base = strings.TrimRight(base, "/")
	return &restClient{
		base: base,
		auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password)),
		hc:   hc,
	}
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Hunts at hundreds of calls a second keep many requests in flight.
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 60 * time.Second
	return &http.Client{Transport: t}
}

// do sends one request. path is under /ari and already escaped; body, when
// not nil, is sent as JSON; out, when not nil, receives the JSON reply.
func (r *restClient) do(ctx context.Context, method, path string, q url.Values, body any, out any) error {
	u := r.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("ARI %s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("ARI %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", r.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("ARI %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("ARI %s %s: read reply: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &m) == nil {
			ae.Message = m.Message
		}
		return ae
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("ARI %s %s: decode reply: %w", method, path, err)
		}
	}
	return nil
}

// seg escapes one path segment (channel ids come from the network).
func seg(s string) string { return url.PathEscape(s) }
