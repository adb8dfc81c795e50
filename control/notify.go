package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Notice tells one org's admins about a step of an assignment, at the org's
// webhook. A request's notice carries the org's confirmation token: it is
// sent only there and never logged.
type Notice struct {
	Org        string    `json:"org"`
	URL        string    `json:"-"`
	Event      string    `json:"event"`
	Assignment string    `json:"assignment"`
	Number     string    `json:"number"`
	Owner      string    `json:"owner"`
	To         string    `json:"to"`
	Token      string    `json:"token,omitempty"`
	ConfirmURL string    `json:"confirm_url,omitempty"`
	Expires    time.Time `json:"expires"`
}

// Notifier delivers notices by HTTP POST (JSON), retrying a receiver that
// fails, and records the outcome in the audit log (without the token).
type Notifier struct {
	// BaseURL is the API's address as the orgs' admins reach it, for the
	// confirmation link (http://host:9464).
	BaseURL string
	Client  *http.Client
	Store   Store
	Logger  *slog.Logger
	// Tries and Backoff bound the delivery (5 tries, 1 s doubling).
	Tries   int
	Backoff time.Duration
	Now     func() time.Time
	wg      sync.WaitGroup
}

// Wait waits for the deliveries under way (they end with Send's context).
func (n *Notifier) Wait() { n.wg.Wait() }

// Send delivers each notice in the background; ctx ends the retries.
func (n *Notifier) Send(ctx context.Context, notices []Notice) {
	for _, no := range notices {
		if no.Token != "" {
			no.ConfirmURL = strings.TrimRight(n.BaseURL, "/") + "/api/v1/orgs/" + no.Org + "/assignments/" + no.Assignment + "/confirm"
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.deliver(ctx, no)
		}()
	}
}

func (n *Notifier) deliver(ctx context.Context, no Notice) {
	tries, backoff := n.Tries, n.Backoff
	if tries <= 0 {
		tries = 5
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	now := time.Now
	if n.Now != nil {
		now = n.Now
	}
	body, _ := json.Marshal(no)
	log := n.Logger.With("org", no.Org, "event", no.Event, "assignment", no.Assignment)
	var err error
	for try := 1; try <= tries; try++ {
		if err = n.post(ctx, no.URL, body); err == nil {
			n.audit(ctx, no, now(), "notice.delivered", "")
			log.Info("assignment notice delivered", "try", try)
			return
		}
		log.Warn("assignment notice not delivered; retrying", "try", try, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff *= 2
	}
	n.audit(ctx, no, now(), "notice.failed", err.Error())
	log.Error("assignment notice not delivered: giving up", "tries", tries, "err", err)
}

func (n *Notifier) post(ctx context.Context, url string, body []byte) error {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "callctl")
	c := n.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		// The URL error may quote the request; it never holds the body.
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (n *Notifier) audit(ctx context.Context, no Notice, at time.Time, action, detail string) {
	if n.Store == nil {
		return
	}
	e := Entry{Time: at.UTC(), Actor: "callctl", Orgs: []string{no.Org}, Action: action,
		Object: "number " + no.Number, Detail: fmt.Sprintf("%s for assignment %s to org %s's webhook", no.Event, no.Assignment, no.Org)}
	if detail != "" {
		e.Detail += ": " + detail
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := n.Store.Append(actx, []Entry{e}); err != nil {
		n.Logger.Warn("audit entry not written", "action", action, "err", err)
	}
}
