package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/callctl/callctl/api"
	"github.com/callctl/callctl/control"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
)

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// newUsers is `callctl users`.
func newUsers() *cobra.Command {
	c := &client{}
	var org string
	var u provision.User
	var fwdNoAnswer, fwdAfter, fwdBusy string
	cmd := &cobra.Command{Use: "users", Short: "An org's users (extensions): list, show, add, set, delete"}
	clientFlags(cmd, c)
	cmd.PersistentFlags().StringVar(&org, "org", "", "the org (required)")
	_ = cmd.MarkPersistentFlagRequired("org")
	base := func() string { return "/api/v1/orgs/" + esc(org) + "/users" }
	cmd.AddCommand(apiCommand(c, "list", "List the org's users", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var us []provision.User
		if _, err := c.do(ctx, "GET", base(), "", nil, &us); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), us)
		}
		rows := [][]string{}
		for _, x := range us {
			rows = append(rows, []string{x.Extension, orNone(x.Name), x.Server, orNone(x.OutgoingNumber), orNone(x.OutboundRule), orNone(x.Endpoint)})
		}
		return table(cmd.OutOrStdout(), "EXT\tNAME\tSERVER\tOUTGOING\tRULE\tENDPOINT", rows)
	}))
	cmd.AddCommand(apiCommand(c, "show EXT", "Show a user", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		var x provision.User
		if _, err := c.do(ctx, "GET", base()+"/"+esc(a[0]), "", nil, &x); err != nil {
			return err
		}
		return printJSON(cmd.OutOrStdout(), x)
	}))
	userFlags := func(cc *cobra.Command) {
		f := cc.Flags()
		f.StringVar(&u.Name, "name", "", "display name")
		f.StringVar(&u.Server, "server", "", "media server")
		f.StringVar(&u.OutgoingNumber, "outgoing-number", "", "default or an E.164 number of the org")
		f.StringVar(&u.OutboundRule, "outbound-rule", "", "outbound rule")
		f.StringVar(&u.Endpoint, "endpoint", "", "endpoint (cluster admins only)")
		f.StringVar(&fwdNoAnswer, "forward-no-answer", "", "forward when not answered (anything the user could dial; empty: none)")
		f.StringVar(&fwdAfter, "forward-after", "", "how long the user rings before the no-answer forward (1s-5m)")
		f.StringVar(&fwdBusy, "forward-busy", "", "forward when busy (anything the user could dial; empty: none)")
	}
	// forward applies the forward flags given to u's forward.
	forward := func(cc *cobra.Command, x *provision.User) error {
		f := cc.Flags()
		if !f.Changed("forward-no-answer") && !f.Changed("forward-after") && !f.Changed("forward-busy") {
			return nil
		}
		fw := provision.Forward{}
		if x.Forward != nil {
			fw = *x.Forward
		}
		if f.Changed("forward-no-answer") {
			fw.NoAnswer = fwdNoAnswer
		}
		if f.Changed("forward-busy") {
			fw.Busy = fwdBusy
		}
		if f.Changed("forward-after") {
			fw.After = 0
			if fwdAfter != "" {
				d, err := time.ParseDuration(fwdAfter)
				if err != nil {
					return fmt.Errorf("--forward-after %q: not a duration like 15s", fwdAfter)
				}
				fw.After = provision.Duration(d)
			}
		}
		x.Forward = &fw
		if fw == (provision.Forward{}) {
			x.Forward = nil
		}
		return nil
	}
	add := apiCommand(c, "add EXT", "Add a user", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		u.Extension = a[0]
		if err := forward(cmd, &u); err != nil {
			return err
		}
		var out provision.User
		if _, err := c.do(ctx, "POST", base(), "", u, &out); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "user %s added to org %s\n", out.Extension, org)
		return nil
	})
	userFlags(add)
	cmd.AddCommand(add)
	set := apiCommand(c, "set EXT", "Change a user (only the flags given)", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		var cur provision.User
		tag, err := c.do(ctx, "GET", base()+"/"+esc(a[0]), "", nil, &cur)
		if err != nil {
			return err
		}
		f := cmd.Flags()
		if f.Changed("name") {
			cur.Name = u.Name
		}
		if f.Changed("server") {
			cur.Server = u.Server
		}
		if f.Changed("outgoing-number") {
			cur.OutgoingNumber = u.OutgoingNumber
		}
		if f.Changed("outbound-rule") {
			cur.OutboundRule = u.OutboundRule
		}
		if f.Changed("endpoint") {
			cur.Endpoint = u.Endpoint
		}
		if err := forward(cmd, &cur); err != nil {
			return err
		}
		if _, err := c.do(ctx, "PUT", base()+"/"+esc(a[0]), tag, cur, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "user %s of org %s changed\n", a[0], org)
		return nil
	})
	userFlags(set)
	cmd.AddCommand(set)
	cmd.AddCommand(apiCommand(c, "delete EXT", "Remove a user", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		return deleteObject(ctx, c, cmd, base()+"/"+esc(a[0]), "user "+a[0])
	}))
	return cmd
}

func deleteObject(ctx context.Context, c *client, cmd *cobra.Command, path, what string) error {
	var cur json.RawMessage
	tag, err := c.do(ctx, "GET", path, "", nil, &cur)
	if err != nil {
		return err
	}
	if _, err := c.do(ctx, "DELETE", path, tag, nil, nil); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), what, "removed")
	return nil
}

// newGroups is `callctl groups`: sequential groups are SIP numbers chained
// by their next numbers, started by service numbers.
func newGroups() *cobra.Command {
	c := &client{}
	var org string
	var m provision.SIPNumber
	var ring string
	var unregistered bool
	cmd := &cobra.Command{Use: "groups", Short: "An org's sequential groups: list, add-member, set-member, remove-member, add-service, remove-service"}
	clientFlags(cmd, c)
	cmd.PersistentFlags().StringVar(&org, "org", "", "the org (required)")
	_ = cmd.MarkPersistentFlagRequired("org")
	sipBase := func() string { return "/api/v1/orgs/" + esc(org) + "/sip-numbers" }
	svcBase := func() string { return "/api/v1/orgs/" + esc(org) + "/service-numbers" }
	cmd.AddCommand(apiCommand(c, "list", "List the org's groups: each chain of SIP numbers and the service numbers that start it", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var sips []provision.SIPNumber
		var svcs []provision.ServiceNumber
		if _, err := c.do(ctx, "GET", sipBase(), "", nil, &sips); err != nil {
			return err
		}
		if _, err := c.do(ctx, "GET", svcBase(), "", nil, &svcs); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), map[string]any{"sip_numbers": sips, "service_numbers": svcs})
		}
		rows := [][]string{}
		for _, s := range sips {
			starts := []string{}
			for _, v := range svcs {
				if v.Start == s.Number {
					starts = append(starts, v.Number)
				}
			}
			reg := "yes"
			if s.Registered != nil && !*s.Registered {
				reg = "no"
			}
			rows = append(rows, []string{s.Number, s.Server, s.Next, orNone(strings.Join(starts, ",")), reg})
		}
		return table(cmd.OutOrStdout(), "SIP NUMBER\tSERVER\tNEXT\tSTARTED BY\tREGISTERED", rows)
	}))
	memberFlags := func(cc *cobra.Command) {
		f := cc.Flags()
		f.StringVar(&m.Server, "server", "", "media server")
		f.StringVar(&m.Next, "next", "", "next SIP number, or 0000 to end the chain")
		f.StringVar(&ring, "ring", "", "ring time (e.g. 20s)")
		f.BoolVar(&unregistered, "unregistered", false, "provisioned as not registered (skipped)")
		f.StringVar(&m.Endpoint, "endpoint", "", "endpoint (cluster admins only)")
	}
	fill := func(cmd *cobra.Command, cur *provision.SIPNumber) error {
		f := cmd.Flags()
		if f.Changed("server") {
			cur.Server = m.Server
		}
		if f.Changed("next") {
			cur.Next = m.Next
		}
		if f.Changed("endpoint") {
			cur.Endpoint = m.Endpoint
		}
		if f.Changed("ring") {
			d, err := time.ParseDuration(ring)
			if err != nil {
				return fmt.Errorf("--ring %q: %w", ring, err)
			}
			cur.RingTimeout = provision.Duration(d)
		}
		if f.Changed("unregistered") {
			reg := !unregistered
			cur.Registered = &reg
		}
		return nil
	}
	add := apiCommand(c, "add-member NUMBER", "Add a SIP number", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		cur := provision.SIPNumber{Number: a[0]}
		if err := fill(cmd, &cur); err != nil {
			return err
		}
		if _, err := c.do(ctx, "POST", sipBase(), "", cur, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "sip number %s added to org %s\n", a[0], org)
		return nil
	})
	memberFlags(add)
	cmd.AddCommand(add)
	set := apiCommand(c, "set-member NUMBER", "Change a SIP number (only the flags given)", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		var cur provision.SIPNumber
		tag, err := c.do(ctx, "GET", sipBase()+"/"+esc(a[0]), "", nil, &cur)
		if err != nil {
			return err
		}
		if err := fill(cmd, &cur); err != nil {
			return err
		}
		if _, err := c.do(ctx, "PUT", sipBase()+"/"+esc(a[0]), tag, cur, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "sip number %s of org %s changed\n", a[0], org)
		return nil
	})
	memberFlags(set)
	cmd.AddCommand(set)
	cmd.AddCommand(apiCommand(c, "remove-member NUMBER", "Remove a SIP number", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		return deleteObject(ctx, c, cmd, sipBase()+"/"+esc(a[0]), "sip number "+a[0])
	}))
	var start string
	addSvc := apiCommand(c, "add-service NUMBER --start SIP", "Add a service number that starts a hunt", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		if _, err := c.do(ctx, "POST", svcBase(), "", provision.ServiceNumber{Number: a[0], Start: start}, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "service number %s starts at %s in org %s\n", a[0], start, org)
		return nil
	})
	addSvc.Flags().StringVar(&start, "start", "", "the SIP number the hunt starts with")
	cmd.AddCommand(addSvc)
	cmd.AddCommand(apiCommand(c, "remove-service NUMBER", "Remove a service number", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		return deleteObject(ctx, c, cmd, svcBase()+"/"+esc(a[0]), "service number "+a[0])
	}))
	return cmd
}

// newNumbers is `callctl numbers`.
func newNumbers() *cobra.Command {
	c := &client{}
	var org, dest string
	cmd := &cobra.Command{Use: "numbers", Short: "Numbers (DIDs): list, show, route (set where a number rings)"}
	clientFlags(cmd, c)
	cmd.PersistentFlags().StringVar(&org, "org", "", "the org (cluster admins may leave it out to list every number)")
	cmd.AddCommand(apiCommand(c, "list", "List numbers", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var ns []api.OrgNumber
		if org == "" {
			var all []provision.Number
			if _, err := c.do(ctx, "GET", "/api/v1/numbers", "", nil, &all); err != nil {
				return err
			}
			for _, n := range all {
				used := n.Owner
				if n.Assignment == provision.AssignActive && n.AssignedTo != "" {
					used = n.AssignedTo
				}
				ns = append(ns, api.OrgNumber{Number: n.Number, Owner: n.Owner, UsedBy: used, AssignedTo: n.AssignedTo, Assignment: n.Assignment, Destination: n.Destination})
			}
		} else if _, err := c.do(ctx, "GET", "/api/v1/orgs/"+esc(org)+"/numbers", "", nil, &ns); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), ns)
		}
		rows := [][]string{}
		for _, n := range ns {
			rows = append(rows, []string{n.Number, n.Owner, n.UsedBy, orNone(n.Assignment), orNone(n.Destination)})
		}
		return table(cmd.OutOrStdout(), "NUMBER\tOWNER\tIN PBX OF\tASSIGNMENT\tDESTINATION", rows)
	}))
	cmd.AddCommand(apiCommand(c, "show NUMBER", "Show a number", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		if org == "" {
			return errors.New("--org is needed")
		}
		var n api.OrgNumber
		if _, err := c.do(ctx, "GET", "/api/v1/orgs/"+esc(org)+"/numbers/"+esc(a[0]), "", nil, &n); err != nil {
			return err
		}
		return printJSON(cmd.OutOrStdout(), n)
	}))
	route := apiCommand(c, "route NUMBER --to DEST", "Set where a number the org uses rings", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		if org == "" {
			return errors.New("--org is needed")
		}
		path := "/api/v1/orgs/" + esc(org) + "/numbers/" + esc(a[0])
		var n api.OrgNumber
		tag, err := c.do(ctx, "GET", path, "", nil, &n)
		if err != nil {
			return err
		}
		if _, err := c.do(ctx, "PUT", path, tag, api.NumberDestination{Destination: dest}, nil); err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "number %s rings %s in org %s\n", a[0], dest, org)
		return nil
	})
	route.Flags().StringVar(&dest, "to", "", "extension, service number or SIP number")
	cmd.AddCommand(route)
	return cmd
}

// newAssignments is `callctl assignments` (seed 001).
func newAssignments() *cobra.Command {
	c := &client{}
	var org string
	var req api.AssignmentRequest
	var conf api.Confirm
	cmd := &cobra.Command{Use: "assignments", Short: "Numbers used in another org's PBX: list, request, confirm, reset"}
	clientFlags(cmd, c)
	cmd.PersistentFlags().StringVar(&org, "org", "", "your org (required)")
	_ = cmd.MarkPersistentFlagRequired("org")
	base := func() string { return "/api/v1/orgs/" + esc(org) + "/assignments" }
	show := func(cmd *cobra.Command, as ...api.Assignment) error {
		if c.json {
			return printJSON(cmd.OutOrStdout(), as)
		}
		rows := [][]string{}
		for _, a := range as {
			conf := []string{}
			for o := range a.Confirmed {
				conf = append(conf, o)
			}
			rows = append(rows, []string{a.ID, a.Number, a.Owner, a.To, a.State, orNone(strings.Join(conf, ",")), a.Expires.UTC().Format(time.RFC3339)})
		}
		return table(cmd.OutOrStdout(), "ID\tNUMBER\tOWNER\tTO\tSTATE\tCONFIRMED BY\tEXPIRES", rows)
	}
	cmd.AddCommand(apiCommand(c, "list", "List the assignments your org is a side of", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var as []api.Assignment
		if _, err := c.do(ctx, "GET", base(), "", nil, &as); err != nil {
			return err
		}
		return show(cmd, as...)
	}))
	request := apiCommand(c, "request --number N --to ORG", "Ask that your number be used in another org's PBX", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var a api.Assignment
		if _, err := c.do(ctx, "POST", base(), "", req, &a); err != nil {
			return err
		}
		return show(cmd, a)
	})
	request.Flags().StringVar(&req.Number, "number", "", "the number (E.164)")
	request.Flags().StringVar(&req.To, "to", "", "the org whose PBX it goes into")
	request.Flags().StringVar(&req.Destination, "destination", "", "where it rings there")
	request.Flags().StringVar(&req.Expires, "expires", "", "how long the request waits (default 168h)")
	cmd.AddCommand(request)
	confirm := apiCommand(c, "confirm ID --confirm-token T", "Confirm for your org with the token your webhook received", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		if conf.Token == "" {
			conf.Token = os.Getenv("CALLCTL_CONFIRM_TOKEN")
		}
		var out api.Assignment
		if _, err := c.do(ctx, "POST", base()+"/"+esc(a[0])+"/confirm", "", conf, &out); err != nil {
			return err
		}
		return show(cmd, out)
	})
	confirm.Flags().StringVar(&conf.Token, "confirm-token", "", "the confirmation token from the webhook (or $CALLCTL_CONFIRM_TOKEN)")
	confirm.Flags().StringVar(&conf.Destination, "destination", "", "where the number rings in your PBX (the receiving org)")
	cmd.AddCommand(confirm)
	cmd.AddCommand(apiCommand(c, "reset ID", "Withdraw a request, or take the number out of the other org's PBX", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		var out api.Assignment
		if _, err := c.do(ctx, "POST", base()+"/"+esc(a[0])+"/reset", "", nil, &out); err != nil {
			return err
		}
		return show(cmd, out)
	}))
	return cmd
}

// newCalls is `callctl calls`.
func newCalls() *cobra.Command {
	c := &client{}
	cmd := apiCommand(c, "calls", "The live calls a node owns now (an org's admin: its org's)", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var calls []controller.CallView
		if _, err := c.do(ctx, "GET", "/api/v1/calls", "", nil, &calls); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), calls)
		}
		rows := [][]string{}
		for _, x := range calls {
			route := x.Route
			if x.HandedOff {
				// Parked, in voicemail, ...: still counted until it ends.
				route += " (in dialplan)"
			}
			rows = append(rows, []string{x.ID, x.Server, x.Caller, x.Dialed, route, orNone(x.Org), orNone(x.Billing), orNone(x.Answered),
				time.Since(x.Start).Round(time.Second).String()})
		}
		return table(cmd.OutOrStdout(), "CALL\tSERVER\tCALLER\tDIALED\tROUTE\tORG\tBILLING\tANSWERED BY\tAGE", rows)
	})
	clientFlags(cmd, c)
	return cmd
}

// newCounts is `callctl counts`.
func newCounts() *cobra.Command {
	c := &client{}
	cmd := apiCommand(c, "counts", "Channels in use against the limits, per server and per org", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var cs api.Counts
		if _, err := c.do(ctx, "GET", "/api/v1/counts", "", nil, &cs); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), cs)
		}
		limit := func(n int) string {
			if n == 0 {
				return "unlimited"
			}
			return fmt.Sprint(n)
		}
		rows := [][]string{}
		for _, s := range cs.Servers {
			rows = append(rows, []string{"server", s.Name, fmt.Sprint(s.InUse), limit(s.Limit)})
		}
		for _, o := range cs.Orgs {
			rows = append(rows, []string{"org", o.Name, fmt.Sprint(o.InUse), limit(o.Limit)})
		}
		return table(cmd.OutOrStdout(), "SCOPE\tNAME\tIN USE\tLIMIT", rows)
	})
	clientFlags(cmd, c)
	return cmd
}

// newAudit is `callctl audit`.
func newAudit() *cobra.Command {
	c := &client{}
	var org string
	cmd := apiCommand(c, "audit", "The audit log (an org's entries with --org)", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		path := "/api/v1/audit"
		if org != "" {
			path = "/api/v1/orgs/" + esc(org) + "/audit"
		}
		var es []control.Entry
		if _, err := c.do(ctx, "GET", path, "", nil, &es); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), es)
		}
		rows := [][]string{}
		for _, e := range es {
			rows = append(rows, []string{e.Time.Format(time.RFC3339), e.Actor, e.Action, e.Object, e.Detail})
		}
		return table(cmd.OutOrStdout(), "TIME\tWHO\tWHAT\tOBJECT\tDETAIL", rows)
	})
	clientFlags(cmd, c)
	cmd.Flags().StringVar(&org, "org", "", "only this org's entries")
	return cmd
}

// planHeader starts the YAML `callctl plan get` prints: `plan apply` reads
// the revision back, so a plan edited from an old copy is refused.
var planHeader = regexp.MustCompile(`(?m)^# callctl plan revision (\d+)\b`)

// newPlan is `callctl plan`.
func newPlan() *cobra.Command {
	c := &client{}
	cmd := &cobra.Command{Use: "plan", Short: "The whole plan: get it as YAML, apply an edited copy"}
	clientFlags(cmd, c)
	cmd.AddCommand(apiCommand(c, "get", "Print the running plan as YAML, with its revision", cobra.NoArgs, func(ctx context.Context, cmd *cobra.Command, _ []string) error {
		var p api.PlanInfo
		if _, err := c.do(ctx, "GET", "/api/v1/plan", "", nil, &p); err != nil {
			return err
		}
		if c.json {
			return printJSON(cmd.OutOrStdout(), p)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "# callctl plan revision %d (version %s, changed by %s at %s)\n%s", p.Revision, p.Version, p.ChangedBy,
			p.Changed.Format(time.RFC3339), p.YAML)
		return nil
	}))
	cmd.AddCommand(apiCommand(c, "apply FILE", "Replace the plan with FILE, a copy from `plan get` (refused if the plan changed since)", cobra.ExactArgs(1), func(ctx context.Context, cmd *cobra.Command, a []string) error {
		data, err := os.ReadFile(a[0])
		if err != nil {
			return err
		}
		m := planHeader.FindSubmatch(data)
		if m == nil {
			return fmt.Errorf("%s has no `# callctl plan revision N` line: start from `callctl plan get`", a[0])
		}
		var res api.PlanResult
		if _, err := c.do(ctx, "PUT", "/api/v1/plan", `"`+string(m[1])+`"`, api.PlanPut{YAML: string(data)}, &res); err != nil {
			return err
		}
		for _, w := range res.Warnings {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w.String())
		}
		fmt.Fprintf(cmd.OutOrStdout(), "plan revision %d (version %s) applied\n", res.Revision, res.Version)
		return nil
	}))
	return cmd
}

// recordsFromAPI lists records through the API.
func recordsFromAPI(ctx context.Context, c *client, cmd *cobra.Command, q url.Values, asJSON bool) error {
	var recs []controller.Record
	if _, err := c.do(ctx, "GET", "/api/v1/records?"+q.Encode(), "", nil, &recs); err != nil {
		return err
	}
	print := printer(cmd.OutOrStdout(), asJSON)
	for i := len(recs) - 1; i >= 0; i-- {
		if err := print(recs[i]); err != nil {
			return err
		}
	}
	return nil
}
