package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// nodeCollector reports, at each scrape, what SPEC §9 asks of a node beyond
// the engine's counters: channels in use and limits per server and org
// (cluster-wide counts), the media servers' connection state, the state
// backend's, and the plan the node runs.
type nodeCollector struct {
	n *runningNode

	inUse, limit, orgInUse, orgLimit, media, backend, revision, info, fileBehind, countErr *prometheus.Desc
}

func newNodeCollector(n *runningNode) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{n: n,
		inUse:      d("callctl_channels_in_use", "Counted legs held now on a media server, across the cluster.", "server"),
		limit:      d("callctl_channel_limit", "A media server's channel limit (0 = unlimited).", "server"),
		orgInUse:   d("callctl_org_channels_in_use", "Counted legs held now for an org, across the cluster.", "org"),
		orgLimit:   d("callctl_org_channel_limit", "An org's channel limit (0 = unlimited).", "org"),
		media:      d("callctl_media_server_connection", "1 for the state of this node's connection to a media server: connected, disconnected, standby (another node holds it).", "server", "state"),
		backend:    d("callctl_state_backend_up", "1 when the state backend answers (memory is always up).", "backend"),
		revision:   d("callctl_plan_revision", "The revision of the plan this node runs."),
		info:       d("callctl_plan_info", "The plan this node runs (version is its content hash).", "version"),
		fileBehind: d("callctl_plan_file_behind", "1 when this node's plan file holds a plan the node does not run (not yet published, refused, or invalid: see /readyz and the log)."),
		countErr:   d("callctl_channel_counts_unavailable", "1 when the counts could not be read for this scrape."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.inUse, c.limit, c.orgInUse, c.orgLimit, c.media, c.backend, c.revision, c.info, c.fileBehind, c.countErr} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	select {
	case <-n.ready:
	default:
		return
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	plan, _ := n.plans.Running()
	st := n.plans.Status()
	g(c.revision, float64(st.Revision))
	g(c.info, 1, st.Version)
	behind := 0.0
	if st.FileBehind != "" {
		behind = 1
	}
	g(c.fileBehind, behind)
	up := 1.0
	if n.backend.up != nil && !n.backend.up() {
		up = 0
	}
	g(c.backend, up, n.cfg.State.Backend)
	for name, state := range n.node.Status() {
		for _, s := range []string{"connected", "disconnected", "standby"} {
			v := 0.0
			if s == state {
				v = 1
			}
			g(c.media, v, name, s)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	failed := 0.0
	for _, s := range plan.Servers {
		g(c.limit, float64(s.ChannelLimit), s.Name)
		if v, err := n.backend.state.Count(ctx, "server", s.Name); err == nil {
			g(c.inUse, float64(v), s.Name)
		} else {
			failed = 1
		}
	}
	for _, o := range plan.Orgs {
		g(c.orgLimit, float64(o.ChannelLimit), o.ID)
		if v, err := n.backend.state.Count(ctx, "org", o.ID); err == nil {
			g(c.orgInUse, float64(v), o.ID)
		} else {
			failed = 1
		}
	}
	g(c.countErr, failed)
}
