package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/callctl/callctl/controller"
)

func newCalls() *cobra.Command {
	var addr string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "calls [--node 127.0.0.1:9464]",
		Short: "List the calls a running node owns now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/calls", nil)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("node %s: %w", addr, err)}
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return &exitError{code: 1, err: fmt.Errorf("node %s: %s", addr, resp.Status)}
			}
			var calls []controller.CallView
			if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
				return &exitError{code: 1, err: fmt.Errorf("node %s: %w", addr, err)}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(calls)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CALL\tSERVER\tCALLER\tDIALED\tROUTE\tANSWERED BY\tAGE")
			for _, c := range calls {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Server, c.Caller, c.Dialed, c.Route,
					orNone(c.Answered), time.Since(c.Start).Round(time.Second))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&addr, "node", "127.0.0.1:9464", "the node's listen.http address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
