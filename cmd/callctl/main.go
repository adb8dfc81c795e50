// Command callctl is the call controller: it serves media servers' calls
// (serve), and checks (validate) and explains (route) provisioning plans.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/controller/routing"
	"github.com/callctl/callctl/examples"
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "" // the command said all there was to say
	}
	return e.err.Error()
}

func main() {
	root := newRoot(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		var ee *exitError
		if errors.As(err, &ee) {
			if ee.err != nil && ee.err.Error() != "" {
				fmt.Fprintln(os.Stderr, "callctl:", ee.err)
			}
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "callctl:", err)
		os.Exit(2)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "callctl",
		Short:         "callctl owns the calls of FreeSWITCH and Asterisk media servers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newValidate(), newRoute(), newServe(), newToken(), newPlan(), newUsers(), newGroups(), newNumbers(),
		newAssignments(), newCalls(), newCounts(), newRecords(), newAudit(), newReady())
	return root
}

// loadPlan loads a provisioning file, or the embedded lab plan when path is
// empty.
func loadPlan(path string) (*provision.Plan, provision.Problems, error) {
	if path == "" {
		return provision.Load(examples.LabName, examples.Lab)
	}
	return provision.LoadFile(path)
}

func newValidate() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate --config PLAN",
		Short: "Check a provisioning plan; list every problem at once (exit 1 if any is an error)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plan, probs, err := loadPlan(path)
			var inv *provision.InvalidError
			if err != nil && !errors.As(err, &inv) {
				return &exitError{code: 2, err: err}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				res := struct {
					Valid    bool               `json:"valid"`
					Version  string             `json:"version,omitempty"`
					Problems provision.Problems `json:"problems"`
				}{Valid: plan != nil, Problems: probs}
				if plan != nil {
					res.Version = plan.Version
				}
				if res.Problems == nil {
					res.Problems = provision.Problems{}
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(res)
			} else {
				for _, p := range probs {
					fmt.Fprintln(out, p)
				}
			}
			if plan == nil {
				if !asJSON {
					fmt.Fprintf(out, "%s: invalid: %d errors, %d warnings\n", name(path), probs.Errors(), len(probs)-probs.Errors())
				}
				return &exitError{code: 1, err: errors.New("")}
			}
			if !asJSON {
				fmt.Fprintf(out, "%s: valid (version %s): %d servers, %d orgs, %d warnings\n",
					name(path), plan.Version, len(plan.Servers), len(plan.Orgs), len(probs))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "provisioning plan (YAML); empty checks the embedded lab plan")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func name(path string) string {
	if path == "" {
		return examples.LabName + " (embedded)"
	}
	return path
}

func newRoute() *cobra.Command {
	var path string
	var req routing.Request
	var transfer string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "route --config PLAN --server S --from CALLER --dial DIGITS",
		Short: "Show what callctl would do with a call, without placing it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			plan, probs, err := loadPlan(path)
			if err != nil {
				for _, p := range probs {
					fmt.Fprintln(cmd.ErrOrStderr(), p)
				}
				return &exitError{code: 2, err: err}
			}
			if plan.Server(req.Server) == nil {
				names := make([]string, 0, len(plan.Servers))
				for _, s := range plan.Servers {
					names = append(names, s.Name)
				}
				return &exitError{code: 2, err: fmt.Errorf("--server %q: no such server in the plan (its servers: %s)", req.Server, strings.Join(names, ", "))}
			}
			if req.Caller == "" && req.Source == "" {
				return &exitError{code: 2, err: errors.New("--from is needed: the calling extension (for a call from the PSTN or a trunk, give --source and the caller's number)")}
			}
			kind, ok := routing.ParseTransfer(transfer)
			if !ok {
				return &exitError{code: 2, err: fmt.Errorf("--transfer %q: want blind, attended or ivr", transfer)}
			}
			req.Transfer = kind
			if kind == routing.IVR && req.TransferOrg == "" && req.Previous == "" {
				return &exitError{code: 2, err: errors.New("--transfer ivr needs the call's org: --org ORG, or --previous DID (the number the call came in on)")}
			}
			if kind != routing.IVR && (req.TransferOrg != "" || req.Previous != "") {
				return &exitError{code: 2, err: errors.New("--org and --previous go with --transfer ivr (a user's transfer routes in the user's org)")}
			}
			if req.TransferOrg != "" && plan.Org(req.TransferOrg) == nil {
				return &exitError{code: 2, err: fmt.Errorf("--org %q: no such org in the plan", req.TransferOrg)}
			}
			d := routing.New(plan).Route(&req)
			s := d.Summarize()
			if len(s.Forwards) > 0 {
				s.MaxForwards = plan.MaxForwards
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(s); err != nil {
					return err
				}
			} else {
				printDecision(cmd.OutOrStdout(), &req, s)
			}
			if s.Route == routing.Rejected {
				// Scripts test the exit code: a call that would be refused
				// is not a success.
				return &exitError{code: 1, err: errors.New("")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&path, "config", "", "provisioning plan (YAML); empty uses the embedded lab plan")
	f.StringVar(&req.Server, "server", "", "media server the call is on")
	f.StringVar(&req.Caller, "from", "", "calling extension (or number, for PSTN and trunk calls)")
	f.StringVar(&req.Dialed, "dial", "", "dialed digits")
	f.StringVar(&req.Source, "source", "", "signalling source of the call (a trunk or PSTN address/endpoint)")
	f.StringVar(&req.Domain, "domain", "", "caller's domain, when extensions repeat across orgs on a server")
	f.StringVar(&req.MarkOrg, "mark-org", "", "org mark carried by a trunk call")
	f.StringVar(&req.CallerName, "caller-name", "", "caller name of PSTN and trunk calls")
	f.StringVar(&transfer, "transfer", "", "blind or attended: the caller (--from) transfers the party --original; "+
		"ivr: the media server itself transfers the call of --from (an IVR, uuid_transfer, an ARI redirect), routed in the call's org")
	f.StringVar(&req.OriginalCaller, "original", "", "number of the party being transferred")
	f.StringVar(&req.TransferOrg, "org", "", "with --transfer ivr: the org of the call being transferred")
	f.StringVar(&req.Previous, "previous", "", "with --transfer ivr: the call's previous destination (the DID an external call came in on)")
	f.BoolVar(&asJSON, "json", false, "print the decision as JSON")
	_ = cmd.MarkFlagRequired("server")
	_ = cmd.MarkFlagRequired("dial")
	return cmd
}

func printDecision(w io.Writer, req *routing.Request, s routing.Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "call\t%s on %s dials %q\n", orNone(req.Caller), req.Server, req.Dialed)
	origin := s.Origin.String()
	switch {
	case s.Peer != "":
		origin += " (trunk from " + s.Peer + ")"
	case s.Caller != "":
		origin += " (user " + s.Caller + " of org " + s.CallerOrg + ")"
	}
	fmt.Fprintf(tw, "origin\t%s\n", origin)
	switch req.Transfer {
	case routing.IVR:
		in := "org " + req.TransferOrg
		if req.TransferOrg == "" {
			in = "the org of DID " + req.Previous
		}
		fmt.Fprintf(tw, "transfer\tivr: no user transferred it; routed in %s, passing %s through\n", in, orNone(req.Caller))
	case routing.Blind, routing.Attended:
		fmt.Fprintf(tw, "transfer\t%s by %s of %s\n", req.Transfer, orNone(req.Caller), orNone(req.OriginalCaller))
	}
	if s.Route == routing.Rejected {
		fmt.Fprintf(tw, "route\trejected: %s (SIP %d)\n", s.Cause, s.SIPCode)
		fmt.Fprintf(tw, "reason\t%s\n", s.Reason)
		tw.Flush()
		return
	}
	route := s.Route.String()
	if s.Org != "" {
		route += " to org " + s.Org
	}
	if s.External != "" {
		route += " " + s.External
	}
	fmt.Fprintf(tw, "route\t%s\n", route)
	if s.Emergency {
		fmt.Fprintf(tw, "emergency\t%s is an emergency number of org %s: to the PSTN whatever the outbound rule, counted but never refused by a limit\n",
			req.Dialed, s.CallerOrg)
	}
	for i, t := range s.Targets {
		label := "target"
		if len(s.Targets) > 1 {
			label = fmt.Sprintf("member %d", i+1)
		}
		line := fmt.Sprintf("%s (%s) dial %s", t.Number, t.Kind, t.Dial)
		if t.Trunk != "" {
			line += fmt.Sprintf(" [trunk to %s, carries %s]", t.Trunk, t.Carries)
		}
		if t.RingTimeout > 0 {
			line += fmt.Sprintf(" ring %s", t.RingTimeout)
		}
		if !t.Registered {
			line += " [not registered: skipped]"
		}
		line += " shows " + orNone(t.CallerID)
		fmt.Fprintf(tw, "%s\t%s\n", label, line)
	}
	if s.CallerName != "" {
		fmt.Fprintf(tw, "caller name\t%s\n", s.CallerName)
	}
	if s.Warning != "" {
		fmt.Fprintf(tw, "warning\t%s\n", s.Warning)
	}
	fmt.Fprintf(tw, "counted\t%s\n", countedText(s))
	fmt.Fprintf(tw, "billing\t%s\n", orNone(s.Billing))
	if s.Fallback != "" {
		fmt.Fprintf(tw, "fallback\t%s\n", s.Fallback)
	}
	for _, f := range s.Forwards {
		when := "on " + f.On
		if f.After > 0 {
			when += " after " + f.After.String()
		}
		fmt.Fprintf(tw, "%s\t%s (dialed as %s dials it, showing the original caller)\n", when, f.Target, forwardOwner(f.By))
	}
	if s.MaxForwards > 0 {
		fmt.Fprintf(tw, "max forwards\t%d (then busy)\n", s.MaxForwards)
	}
	tw.Flush()
}

// forwardOwner names who a forward is dialed as: a user, or a limit's org.
func forwardOwner(by string) string {
	if strings.HasPrefix(by, "server ") || strings.HasPrefix(by, "org ") {
		return "the limit of " + by
	}
	return "user " + by
}

func countedText(s routing.Summary) string {
	var parts []string
	for _, l := range s.Legs {
		parts = append(parts, fmt.Sprintf("%s: 1 (%s, org %s, on arrival)", l.Server, l.Kind, l.Org))
	}
	if len(s.Targets) > 0 {
		for _, l := range s.Targets[0].Legs {
			note := ""
			if l.Remote {
				note = ", counted when the call arrives there"
			}
			parts = append(parts, fmt.Sprintf("%s: 1 (%s, org %s%s)", l.Server, l.Kind, l.Org, note))
		}
	}
	if len(parts) == 0 {
		return "nothing (both ends on one server)"
	}
	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
