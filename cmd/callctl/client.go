package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// client speaks to a node's API with a token. The address and the token
// come from flags, else CALLCTL_API and CALLCTL_TOKEN, else the client file
// ($XDG_CONFIG_HOME/callctl/cli.yaml: {api: URL, token: TOKEN}).
type client struct {
	api, token string
	json       bool
	http       *http.Client
}

type clientFile struct {
	API   string `yaml:"api"`
	Token string `yaml:"token"`
}

func clientFlags(cmd *cobra.Command, c *client) {
	f := cmd.PersistentFlags()
	f.StringVar(&c.api, "api", "", "the node's API address (default: $CALLCTL_API, the client file, or http://127.0.0.1:9464)")
	f.StringVar(&c.token, "token", "", "API token (default: $CALLCTL_TOKEN or the client file); prefer the variable: flags show in ps")
	f.BoolVar(&c.json, "json", false, "print JSON")
}

func clientFilePath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		if h, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(h, ".config")
		}
	}
	return filepath.Join(dir, "callctl", "cli.yaml")
}

func (c *client) resolve() error {
	var cf clientFile
	if b, err := os.ReadFile(clientFilePath()); err == nil {
		if err := yaml.Unmarshal(b, &cf); err != nil {
			return fmt.Errorf("%s: %w", clientFilePath(), err)
		}
	}
	for _, v := range []string{c.api, os.Getenv("CALLCTL_API"), cf.API, "http://127.0.0.1:9464"} {
		if v != "" {
			c.api = v
			break
		}
	}
	if !strings.Contains(c.api, "://") {
		c.api = "http://" + c.api
	}
	for _, v := range []string{c.token, os.Getenv("CALLCTL_TOKEN"), cf.Token} {
		if v != "" {
			c.token = v
			break
		}
	}
	if c.token == "" {
		return errors.New("no API token: set CALLCTL_TOKEN (create one with `callctl token create`)")
	}
	c.http = &http.Client{Timeout: 30 * time.Second}
	return nil
}

// apiError is the API's error body.
type apiErr struct {
	Status   int
	Message  string `json:"error"`
	Problems []struct {
		Severity, Object, Field, Reason, File string
		Line                                  int
	} `json:"problems"`
}

func (e *apiErr) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s: %s %s: %s", p.Severity, p.Object, p.Field, p.Reason)
	}
	return b.String()
}

// do sends a request and decodes the answer into out (when not nil); it
// returns the answer's ETag.
func (c *client) do(ctx context.Context, method, path string, ifMatch string, in, out any) (string, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return "", err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.api, "/")+path, body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", c.api, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		e := &apiErr{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return "", e
	}
	if out != nil && len(data) > 0 {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = append((*raw)[:0], data...)
		} else if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("%s %s: answer does not decode: %w", method, path, err)
		}
	}
	return resp.Header.Get("ETag"), nil
}

func esc(s string) string { return url.PathEscape(s) }

// apiCommand is a command that speaks to the API.
func apiCommand(c *client, use, short string, args cobra.PositionalArgs, run func(ctx context.Context, cmd *cobra.Command, args []string) error) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Args: args, RunE: func(cmd *cobra.Command, a []string) error {
		if err := c.resolve(); err != nil {
			return &exitError{code: 2, err: err}
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		if err := run(ctx, cmd, a); err != nil {
			var ae *apiErr
			if errors.As(err, &ae) {
				return &exitError{code: 1, err: err}
			}
			return &exitError{code: 1, err: err}
		}
		return nil
	}}
}

// printJSON prints raw JSON indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
