package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/callctl/callctl/adapters/file"
	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/auth"
)

// tokenStore opens where the node of cfgPath keeps its tokens: its state
// directory, or Redis (with a client of its own: no lease is taken).
func tokenStore(cfgPath string) (auth.Store, func(), error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	if cfg.State.Backend == "redis" {
		rc := cfg.State.Redis
		rc.Defaults()
		rdb, err := redis.NewClient(rc, "callctl-token")
		if err != nil {
			return nil, nil, err
		}
		return redis.NewTokens(rdb, rc.Prefix), func() { _ = rdb.Close() }, nil
	}
	s, err := file.NewTokens(cfg.State.Dir)
	if err != nil {
		return nil, nil, err
	}
	return s, func() {}, nil
}

// newToken is `callctl token`: it works on the node's store directly (the
// first token cannot come from the API).
func newToken() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{Use: "token", Short: "API tokens: create (shown once), list, revoke"}
	cmd.PersistentFlags().StringVar(&cfgPath, "config", "", "node configuration: where its tokens are kept (state.dir, or Redis)")
	run := func(f func(ctx context.Context, cmd *cobra.Command, s auth.Store, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			s, done, err := tokenStore(cfgPath)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			defer done()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if err := f(ctx, cmd, s, args); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		}
	}
	var name, org string
	var cluster bool
	create := &cobra.Command{Use: "create --name NAME (--org ORG | --cluster)", Short: "Create a token; it is printed once, keep it",
		Args: cobra.NoArgs, RunE: run(func(ctx context.Context, cmd *cobra.Command, s auth.Store, _ []string) error {
			if cluster == (org != "") {
				return errors.New("say whom the token acts for: --org ORG, or --cluster for a cluster admin")
			}
			t, secret, err := auth.Create(ctx, s, name, org, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s (%s) for %s created; it is shown once:\n", t.ID, t.Name, t.Scope())
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			return nil
		})}
	create.Flags().StringVar(&name, "name", "", "who or what uses it")
	create.Flags().StringVar(&org, "org", "", "the org it acts for")
	create.Flags().BoolVar(&cluster, "cluster", false, "a cluster admin's token")
	_ = create.MarkFlagRequired("name")
	imp := &cobra.Command{Use: "import --name NAME (--org ORG | --cluster)",
		Short: "Store the token in $CALLCTL_TOKEN (made elsewhere, e.g. a lab's .env) as if created here",
		Long: "Store the token in $CALLCTL_TOKEN (never a flag: flags show in ps) so that it works as if\n" +
			"`token create` had made it; only its hash is kept. Importing it again changes nothing.",
		Args: cobra.NoArgs, RunE: run(func(ctx context.Context, cmd *cobra.Command, s auth.Store, _ []string) error {
			if cluster == (org != "") {
				return errors.New("say whom the token acts for: --org ORG, or --cluster for a cluster admin")
			}
			presented := os.Getenv("CALLCTL_TOKEN")
			if presented == "" {
				return errors.New("no token to import: set CALLCTL_TOKEN")
			}
			t, err := auth.Import(ctx, s, name, org, presented, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s (%s) for %s imported\n", t.ID, t.Name, t.Scope())
			return nil
		})}
	imp.Flags().StringVar(&name, "name", "", "who or what uses it")
	imp.Flags().StringVar(&org, "org", "", "the org it acts for")
	imp.Flags().BoolVar(&cluster, "cluster", false, "a cluster admin's token")
	_ = imp.MarkFlagRequired("name")
	list := &cobra.Command{Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, cmd *cobra.Command, s auth.Store, _ []string) error {
			ts, err := s.List(ctx)
			if err != nil {
				return err
			}
			rows := [][]string{}
			for _, t := range ts {
				state := "active"
				if t.Revoked != nil {
					state = "revoked " + t.Revoked.Format(time.RFC3339)
				}
				rows = append(rows, []string{t.ID, t.Name, t.Scope(), t.Created.Format(time.RFC3339), state})
			}
			return table(cmd.OutOrStdout(), "ID\tNAME\tSCOPE\tCREATED\tSTATE", rows)
		})}
	revoke := &cobra.Command{Use: "revoke ID", Short: "Revoke a token at once", Args: cobra.ExactArgs(1),
		RunE: run(func(ctx context.Context, cmd *cobra.Command, s auth.Store, args []string) error {
			t, err := auth.Revoke(ctx, s, args[0], time.Now())
			if errors.Is(err, auth.ErrUnknown) {
				return fmt.Errorf("no token %s", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token %s (%s, %s) revoked\n", t.ID, t.Name, t.Scope())
			return nil
		})}
	cmd.AddCommand(create, imp, list, revoke)
	return cmd
}
