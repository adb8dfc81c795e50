// Command arirecord makes ARI recordings of a real Asterisk in the form of
// ../shared/traces/asterisk: one .jsonl of WebSocket events per application
// and one .rest.log of the REST calls with their replies. It runs a script:
//
//	app NAME QUERY          connect NAME's event WebSocket (QUERY: subscribeAll=false)
//	rest METHOD PATH        a REST call below /ari, logged with its reply
//	async rest METHOD PATH  the same, without waiting for the reply (the next line goes at once)
//	wait APP TYPE [ID]      until APP received an event TYPE (about channel or bridge ID);
//	                        $last in a later rest path is that event's channel id
//	sleep DURATION          a pause (Go duration)
//
// Usage: go run ./integration/lab/arirecord -ari http://ari:ari@127.0.0.1:8088/ari -out DIR/NAME SCRIPT
// writes DIR/NAME.<app>.jsonl and DIR/NAME.rest.log. Lines starting with # are comments.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

type app struct {
	name string
	conn *websocket.Conn
	out  *os.File

	mu   sync.Mutex
	seen []event
	more chan struct{}
}

type event struct {
	Type    string `json:"type"`
	Channel *struct {
		ID string `json:"id"`
	} `json:"channel"`
	Bridge *struct {
		ID string `json:"id"`
	} `json:"bridge"`
}

func main() {
	base := flag.String("ari", "http://ari:ari@127.0.0.1:8088/ari", "ARI base URL with credentials")
	out := flag.String("out", "", "output path prefix (DIR/NAME)")
	timeout := flag.Duration("timeout", 20*time.Second, "limit of each wait")
	flag.Parse()
	if *out == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: arirecord -ari URL -out DIR/NAME SCRIPT")
		os.Exit(2)
	}
	if err := run(*base, *out, flag.Arg(0), *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "arirecord:", err)
		os.Exit(1)
	}
}

func run(base, out, script string, timeout time.Duration) error {
	u, err := url.Parse(base)
	if err != nil || u.User == nil {
		return fmt.Errorf("-ari %q: want http://user:password@host:port/ari", base)
	}
	pass, _ := u.User.Password()
	user := u.User.Username()
	u.User = nil
	root := strings.TrimRight(u.String(), "/")
	f, err := os.Open(script)
	if err != nil {
		return err
	}
	defer f.Close()
	restLog, err := os.Create(out + ".rest.log")
	if err != nil {
		return err
	}
	defer restLog.Close()
	apps := map[string]*app{}
	defer func() {
		for _, a := range apps {
			a.conn.Close()
			a.out.Close()
		}
	}()
	hc := &http.Client{Timeout: 15 * time.Second}
	var logMu sync.Mutex
	var pending sync.WaitGroup
	defer pending.Wait()
	call := func(method, path string) error {
		req, err := http.NewRequest(method, root+path, nil)
		if err != nil {
			return err
		}
		req.SetBasicAuth(user, pass)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		logMu.Lock()
		defer logMu.Unlock()
		_, err = fmt.Fprintf(restLog, "%s %s %s -> %d %s\n", time.Now().UTC().Format(time.RFC3339Nano), method, root+path,
			resp.StatusCode, bytes.TrimSpace(body))
		return err
	}
	sc := bufio.NewScanner(f)
	last := ""
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		w := strings.Fields(line)
		bad := func(err error) error { return fmt.Errorf("%s:%d: %s: %w", script, n, line, err) }
		switch {
		case w[0] == "app" && len(w) == 3:
			ws := strings.Replace(root, "http", "ws", 1) + "/events?app=" + url.QueryEscape(w[1]) + "&" + w[2]
			h := http.Header{}
			h.Set("Authorization", basic(user, pass))
			conn, _, err := websocket.DefaultDialer.Dial(ws, h)
			if err != nil {
				return bad(err)
			}
			fo, err := os.Create(out + "." + w[1] + ".jsonl")
			if err != nil {
				return bad(err)
			}
			a := &app{name: w[1], conn: conn, out: fo, more: make(chan struct{}, 1)}
			apps[w[1]] = a
			go a.read()
		case w[0] == "rest" && len(w) == 3:
			if err := call(w[1], strings.ReplaceAll(w[2], "$last", url.PathEscape(last))); err != nil {
				return bad(err)
			}
		case w[0] == "async" && len(w) == 4 && w[1] == "rest":
			pending.Add(1)
			go func() {
				defer pending.Done()
				if err := call(w[2], w[3]); err != nil {
					fmt.Fprintln(os.Stderr, bad(err))
				}
			}()
		case w[0] == "wait" && (len(w) == 3 || len(w) == 4):
			a := apps[w[1]]
			if a == nil {
				return bad(errors.New("no such app"))
			}
			id := ""
			if len(w) == 4 {
				id = w[3]
			}
			if last, err = a.wait(w[2], id, timeout); err != nil {
				return bad(err)
			}
		case w[0] == "sleep" && len(w) == 2:
			d, err := time.ParseDuration(w[1])
			if err != nil {
				return bad(err)
			}
			time.Sleep(d)
		default:
			return bad(errors.New("not a command"))
		}
	}
	return sc.Err()
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "http://x", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func (a *app) read() {
	for {
		_, msg, err := a.conn.ReadMessage()
		if err != nil {
			return
		}
		var ev event
		_ = json.Unmarshal(msg, &ev)
		a.mu.Lock()
		fmt.Fprintf(a.out, "%s\n", bytes.TrimSpace(msg))
		a.seen = append(a.seen, ev)
		a.mu.Unlock()
		select {
		case a.more <- struct{}{}:
		default:
		}
	}
}

func (a *app) wait(typ, id string, timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	next := 0
	for {
		a.mu.Lock()
		for ; next < len(a.seen); next++ {
			ev := a.seen[next]
			if ev.Type != typ {
				continue
			}
			if id == "" || ev.Channel != nil && ev.Channel.ID == id || ev.Bridge != nil && ev.Bridge.ID == id {
				a.mu.Unlock()
				if ev.Channel != nil {
					return ev.Channel.ID, nil
				}
				return "", nil
			}
		}
		a.mu.Unlock()
		select {
		case <-a.more:
		case <-deadline:
			return "", fmt.Errorf("no %s %s within %s", typ, id, timeout)
		}
	}
}
