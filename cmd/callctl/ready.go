package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newReady is `callctl ready`: the node's /readyz as an exit code, for
// health checks in images without a shell or curl (docker/compose.yaml).
func newReady() *cobra.Command {
	var cfgPath string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "ready [--config NODE.yaml]",
		Short: "Exit 0 when the node of NODE.yaml answers ready on its listen.http (/readyz), 1 otherwise",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if cfg.Listen.HTTP == "" {
				return &exitError{code: 2, err: fmt.Errorf("node config %s: listen.http is empty: the node serves no /readyz", orDefault(cfgPath))}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			verdict, ok, err := readyOf(ctx, cfg.Listen.HTTP)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprint(cmd.OutOrStdout(), verdict)
			if !ok {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "node configuration (its listen.http)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after")
	return cmd
}

// readyOf asks the node listening on addr for /readyz, over loopback when
// it listens on every interface (it gives details only there).
func readyOf(ctx context.Context, addr string) (string, bool, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false, fmt.Errorf("listen.http %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", false, fmt.Errorf("ask %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", false, fmt.Errorf("read %s: %w", url, err)
	}
	verdict := string(body)
	if !strings.HasSuffix(verdict, "\n") {
		verdict += "\n"
	}
	return verdict, resp.StatusCode == http.StatusOK, nil
}
