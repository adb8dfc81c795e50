// Package plangen builds large, valid provisioning documents for benchmarks
// and load tests: many servers, extensions, groups and caller-ID rules.
package plangen

import (
	"fmt"

	"github.com/callctl/callctl/controller/provision"
)

// Size says how big a plan to build.
type Size struct {
	Servers    int // at most 900 (three-digit prefixes 100-999)
	Extensions int
	Groups     int // each of GroupSize SIP numbers with one service number
	GroupSize  int
	Rules      int // caller-ID rules, each with its own number
}

// Bench is the size the routing benchmark uses.
var Bench = Size{Servers: 100, Extensions: 10000, Groups: 1000, GroupSize: 5, Rules: 1000}

// Build returns a document of one org spread over the servers. Extensions are
// 5 digits from 10000, SIP numbers 8 digits from 50000000, service numbers 7
// digits from 8000000; server i has prefix 100+i; caller-ID rule i matches
// destinations beginning 00 + 44 + (100+i) and presents +44 20 7946 (1000+i).
func Build(sz Size) *provision.Document {
	doc := &provision.Document{}
	doc.Settings.ServerPrefixes = provision.PrefixRange{Min: 100, Max: 999}
	for i := 0; i < sz.Servers; i++ {
		s := provision.Server{Name: fmt.Sprintf("s%d", i), Kind: provision.KindFreeSWITCH, Prefix: fmt.Sprint(100 + i),
			ChannelLimit: 1000, FreeSWITCH: &provision.ESLConn{Address: fmt.Sprintf("127.0.0.1:%d", 20000+i), Password: "ClueCon"},
			PSTN:   &provision.Trunk{Dial: "sofia/gateway/pstn/{dest}", From: []string{fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}},
			Trunks: map[string]provision.Trunk{}}
		doc.Servers = append(doc.Servers, s)
	}
	// Every server reaches every other: the routing cost must not depend on it.
	for i := range doc.Servers {
		for j := range doc.Servers {
			if i != j {
				doc.Servers[i].Trunks[doc.Servers[j].Name] = provision.Trunk{Dial: "sofia/gateway/" + doc.Servers[j].Name + "/{dest}",
					From: []string{fmt.Sprintf("10.2.%d.%d", j/250, j%250+1) + fmt.Sprintf(":%d", 5060+i)}}
			}
		}
	}
	org := provision.Org{ID: "big", Name: "Big Org", CountryCode: "49", NationalPrefix: "0", InternationalPrefix: "00",
		DefaultNumber: "+4930100000", OutboundRules: []provision.OutboundRule{{Name: "world", Countries: []string{"*"}}}}
	numbers := []provision.Number{{Number: "+4930100000", Owner: "big", Destination: "10003"}}
	for i := 0; i < sz.Extensions; i++ {
		org.Users = append(org.Users, provision.User{Extension: fmt.Sprint(10000 + i), Server: doc.Servers[i%sz.Servers].Name,
			OutboundRule: "world"})
	}
	n := 0
	for g := 0; g < sz.Groups; g++ {
		for k := 0; k < sz.GroupSize; k++ {
			next := "0000"
			if k < sz.GroupSize-1 {
				next = fmt.Sprint(50000000 + n + 1)
			}
			org.SIPNumbers = append(org.SIPNumbers, provision.SIPNumber{Number: fmt.Sprint(50000000 + n),
				Server: doc.Servers[g%sz.Servers].Name, Next: next})
			n++
		}
		org.ServiceNumbers = append(org.ServiceNumbers, provision.ServiceNumber{Number: fmt.Sprint(8000000 + g),
			Start: fmt.Sprint(50000000 + g*sz.GroupSize)})
	}
	for i := 0; i < sz.Rules; i++ {
		num := fmt.Sprintf("+44207946%04d", 1000+i)
		numbers = append(numbers, provision.Number{Number: num, Owner: "big"})
		org.CallerID.Rules = append(org.CallerID.Rules, provision.CallerIDRule{Prefix: fmt.Sprintf("0044%d", 100+i), Number: num})
	}
	doc.Orgs = []provision.Org{org}
	doc.Numbers = numbers
	return doc
}

// Plan builds and compiles a plan of the given size.
func Plan(sz Size) (*provision.Plan, error) {
	p, probs := provision.Compile(Build(sz), nil)
	if p == nil {
		return nil, &provision.InvalidError{Problems: probs}
	}
	return p, nil
}
