package node

import "github.com/prometheus/client_golang/prometheus"

var eventQueueDesc = prometheus.NewDesc("callctl_event_queue_bytes",
	"Bytes of events a media server has sent to this node that callctl has not read yet (the sockets' receive queues), "+
		"by server and connection: ari (Asterisk's event WebSocket), esl_inbound (FreeSWITCH's inbound connection), "+
		"esl_calls (the calls' own outbound sockets, summed). Absent while a connection is down.",
	[]string{"server", "connection"}, nil)

// eventQueues reports, at each scrape, how far behind the media servers'
// events this node reads: a queue that stays up means calls wait for
// callctl.
type eventQueues struct{ n *Node }

func (q eventQueues) Describe(ch chan<- *prometheus.Desc) { ch <- eventQueueDesc }

func (q eventQueues) Collect(ch chan<- prometheus.Metric) {
	n := q.n
	g := func(v int, server, conn string) {
		ch <- prometheus.MustNewConstMetric(eventQueueDesc, prometheus.GaugeValue, float64(v), server, conn)
	}
	for name, ms := range n.fsMS {
		if v, ok := ms.EventQueue(); ok {
			g(v, name, "esl_inbound")
		}
	}
	if n.fsServer != nil {
		calls := n.fsServer.EventQueues()
		for name := range n.fsMS {
			g(calls[name], name, "esl_calls")
		}
	}
	n.mu.Lock()
	type live struct {
		name string
		q    func() (int, bool)
	}
	clients := make([]live, 0, len(n.ariLive))
	for name, c := range n.ariLive {
		clients = append(clients, live{name, c.EventQueue})
	}
	n.mu.Unlock()
	for _, c := range clients {
		if v, ok := c.q(); ok {
			g(v, c.name, "ari")
		}
	}
}
