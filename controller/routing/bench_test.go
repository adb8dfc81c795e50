package routing_test

import (
	"testing"

	"github.com/callctl/callctl/controller/provision/plangen"
	"github.com/callctl/callctl/controller/routing"
)

// BenchmarkRoute routes a mix of calls over a plan of 10,000 extensions,
// 1,000 groups of 5, 100 servers and 1,000 caller-ID rules.
func BenchmarkRoute(b *testing.B) {
	plan, err := plangen.Plan(plangen.Bench)
	if err != nil {
		b.Fatal(err)
	}
	r := routing.New(plan)
	reqs := map[string]routing.Request{
		"local":        {Server: "s0", Caller: "10000", Dialed: "10100"},    // 10100 is on s0 too
		"inter-server": {Server: "s0", Caller: "10000", Dialed: "15710057"}, // prefix 157 + 10057 (on s57)
		"hunt":         {Server: "s0", Caller: "10000", Dialed: "8000500"},
		"external":     {Server: "s0", Caller: "10000", Dialed: "004460012345678"},
		"external-cid": {Server: "s0", Caller: "10000", Dialed: "00441991234567"},
		"pstn-in":      {Server: "s3", Source: "10.1.0.4", Caller: "+4915112345678", Dialed: "+4930100000"},
	}
	for name, req := range reqs {
		d := r.Route(&req)
		if d.Kind == routing.Rejected {
			b.Fatalf("%s: rejected: %s", name, d.Reason)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d := r.Route(&req)
				if d.Kind == routing.Rejected {
					b.Fatal(d.Reason)
				}
			}
		})
	}
}
