package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/controller"
)

func newRecords() *cobra.Command {
	var cfgPath, from string
	var follow, asJSON bool
	c := &client{}
	q := map[string]*string{"org": new(string), "since": new(string), "until": new(string), "number": new(string), "call_id": new(string), "limit": new(string)}
	cmd := &cobra.Command{
		Use:   "records [--org O] [--since T] [--number N] [--call-id ID] | --config NODE.yaml [--follow] [--from ID|TIME|all]",
		Short: "Call records: through a node's API, or with --config from the node's own store (--follow prints new ones as they come)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				if err := c.resolve(); err != nil {
					return &exitError{code: 2, err: err}
				}
				vals := url.Values{}
				for k, v := range q {
					if *v != "" {
						vals.Set(k, *v)
					}
				}
				if err := recordsFromAPI(cmd.Context(), c, cmd, vals, asJSON || c.json); err != nil {
					return &exitError{code: 1, err: err}
				}
				return nil
			}
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			print := printer(cmd.OutOrStdout(), asJSON)
			if cfg.State.Backend != "redis" {
				// A single node's journal, read from its state directory.
				if follow {
					return file.FollowJournal(ctx, cfg.State.Dir, from == "all" || from == "0", 200*time.Millisecond, print)
				}
				if err := file.QueryJournalInOrder(cfg.State.Dir, print); err != nil {
					return &exitError{code: 1, err: err}
				}
				return nil
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			if follow {
				// Following needs the stream reader of a node's state; the reader
				// takes a lease of its own, which it drops when it stops.
				st, err := redis.New(ctx, cfg.State.Redis, "records-"+strconv.Itoa(os.Getpid()), log)
				if err != nil {
					return &exitError{code: 1, err: err}
				}
				defer st.Close(context.Background())
				if from == "" {
					from = "$"
				}
				return st.Follow(ctx, from, print)
			}
			if err := redis.List(ctx, cfg.State.Redis, from, print, log); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.api, "api", "", "the node's API address (default: $CALLCTL_API or http://127.0.0.1:9464)")
	f.StringVar(&c.token, "token", "", "API token (default: $CALLCTL_TOKEN)")
	f.StringVar(q["org"], "org", "", "records of this org (callee's, caller's or billed)")
	f.StringVar(q["since"], "since", "", "calls started at or after this RFC 3339 time")
	f.StringVar(q["until"], "until", "", "calls started at or before this RFC 3339 time")
	f.StringVar(q["number"], "number", "", "records naming this number (caller, dialed, external, caller ID)")
	f.StringVar(q["call_id"], "call-id", "", "the record of this call")
	f.StringVar(q["limit"], "limit", "", "at most this many (newest; default 100)")
	f.StringVar(&cfgPath, "config", "", "read the node's own store instead (state.redis; CALLCTL_* variables override it)")
	f.BoolVar(&follow, "follow", false, "keep printing new records until interrupted")
	f.StringVar(&from, "from", "", "start after a stream id, at an RFC 3339 time, or 'all' (default: all, or only new ones with --follow)")
	f.BoolVar(&asJSON, "json", false, "one JSON record per line")
	return cmd
}

func printer(w io.Writer, asJSON bool) func(controller.Record) error {
	enc := json.NewEncoder(w)
	return func(r controller.Record) error {
		if asJSON {
			return enc.Encode(r)
		}
		answered := "-"
		if r.Answered != "" {
			answered = r.Answered
		}
		_, err := fmt.Fprintf(w, "%s call=%s server=%s %s -> %s route=%s org=%s billing=%s answered_by=%s attempts=%d cause=%s legs=%d\n",
			r.Start.UTC().Format(time.RFC3339), r.CallID, r.Server, r.Caller, r.Dialed, r.Route, r.Org, r.Billing,
			answered, len(r.Attempts), r.HangupCause, len(r.Legs))
		return err
	}
}
