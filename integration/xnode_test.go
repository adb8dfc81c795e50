package integration

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/callctl/callctl/adapters/redis"
	"github.com/callctl/callctl/adapters/redis/redistest"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/accounting"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/node"
)

// Two nodes sharing Redis, each handed some of a FreeSWITCH's calls: the
// record of a transferred call links to the record of the call its party
// came from although another node handled that call (SPEC §4).

// xnodeEnv is a simulated all-FreeSWITCH lab whose socket application goes
// through a gate the test points at one node or the other.
type xnodeEnv struct {
	lab    *sim.Lab
	redis  *redistest.Server
	gate   *relay
	nodes  map[string]*node.Node
	esl    map[string]string
	recs   map[string]*Recorder
	stores map[string]*redis.Store
}

func startXNode(t *testing.T, phones ...sim.PhoneConfig) *xnodeEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x := &xnodeEnv{redis: redistest.Start(t, redistest.Options{}), nodes: map[string]*node.Node{},
		esl: map[string]string{}, recs: map[string]*Recorder{}, stores: map[string]*redis.Store{}}
	for _, id := range []string{"n1", "n2"} {
		addr, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		x.esl[id] = addr
	}
	gate, err := startRelay("127.0.0.1:0", x.esl["n1"], logger())
	if err != nil {
		t.Fatal(err)
	}
	x.gate = gate
	t.Cleanup(gate.Close)
	f := FreeSWITCHFleet
	cfg := LabConfig(f, []string{gate.Addr()})
	cfg.PSTNDefault = &sim.Behaviour{Mode: "answer", RingFor: 50 * time.Millisecond}
	cfg.Phones = phones
	cfg.Logger = logger()
	x.lab, err = sim.StartLab(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(x.lab.Close)
	e := &Env{Fleet: f, Lab: x.lab}
	plan, err := e.plan(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"n1", "n2"} {
		st, err := redis.New(ctx, redis.Config{Addrs: []string{x.redis.Addr}, LeaseTTL: leaseTTL,
			HeartbeatInterval: 200 * time.Millisecond}, id, logger())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close(context.Background()) })
		x.stores[id] = st
		x.recs[id] = &Recorder{State: st, more: make(chan struct{})}
		n, err := node.Start(ctx, plan, Tuned(node.Options{ID: id, ESLListen: x.esl[id], State: x.recs[id], Logger: logger()}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer scancel()
			if err := n.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				t.Logf("node %s shutdown: %v", id, err)
			}
		})
		if err := n.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		x.nodes[id] = n
	}
	return x
}

// handTo makes the media servers hand their next calls to node id.
func (x *xnodeEnv) handTo(id string) { x.gate.SwitchTo(x.esl[id]) }

// waitAnswered waits until node id has a call on server connected to target.
func (x *xnodeEnv) waitAnswered(t *testing.T, id, server, target string) {
	t.Helper()
	if !waitFor(10*time.Second, func() bool {
		return slices.ContainsFunc(x.nodes[id].Engine().Calls(), func(c controller.CallView) bool {
			return c.Server == server && c.Answered == target
		})
	}) {
		t.Fatalf("node %s has no call on %s connected to %s", id, server, target)
	}
}

// record waits for a record one of the nodes wrote.
func (x *xnodeEnv) record(t *testing.T, what string, match func(*controller.Record) bool) controller.Record {
	t.Helper()
	var rec controller.Record
	if !waitFor(15*time.Second, func() bool {
		for _, r := range x.recs {
			for _, c := range r.All() {
				if match(&c) {
					rec = c
					return true
				}
			}
		}
		return false
	}) {
		t.Fatalf("no record of %s; n1 wrote %+v, n2 wrote %+v", what, x.recs["n1"].All(), x.recs["n2"].All())
	}
	return rec
}

func (x *xnodeEnv) waitCount(t *testing.T, server string, want int) {
	t.Helper()
	waitCount(t, x.stores["n1"], "server", server, want, 15*time.Second)
}

// 3999 consults 2099 on server 12 through node n2, then takes a PSTN call
// that server 11 hands to node n1, and transfers it to 2099 (attended). The
// consultation's record, written by n2, links to the PSTN call's record,
// written by n1, and names 3999.
func TestAttendedTransferAcrossNodes(t *testing.T) {
	x := startXNode(t, sim.PhoneConfig{Server: "srv11", Ext: "3999", Behaviour: answers},
		sim.PhoneConfig{Server: "srv12", Ext: "2099", Behaviour: answers})
	x.handTo("n2")
	consult := &placed{server: "srv11", from: "3999", dialed: "122099", at: time.Now()}
	c, err := x.lab.Call(ctxT(t), "srv11", "3999", "122099", sim.CallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	consult.Call = c
	bridged(t, consult)
	x.waitAnswered(t, "n2", "srv11", "2099")
	x.handTo("n1")
	in := &placed{server: "srv11", from: "+4915112345678", dialed: "+4930100100", at: time.Now()}
	if in.Call, err = x.lab.CallFromPSTN(ctxT(t), "srv11", in.dialed, in.from, sim.CallOptions{}); err != nil {
		t.Fatal(err)
	}
	bridged(t, in)
	x.waitAnswered(t, "n1", "srv11", "3999")
	if err := x.lab.AttendedTransfer("srv11", in.UUID(), consult.UUID()); err != nil {
		t.Fatal(err)
	}
	ended(t, consult)
	x.waitCount(t, "srv11", 2)
	hangup(t, in)
	x.waitCount(t, "srv11", 0)
	x.waitCount(t, "srv12", 0)
	first := x.record(t, "the PSTN call", of(in))
	rec := x.record(t, "the consultation", of(consult))
	if first.Node != "n1" || rec.Node != "n2" {
		t.Fatalf("the PSTN call's record is %s's, the consultation's %s's: want n1 and n2", first.Node, rec.Node)
	}
	if rec.Transfer != "attended" || first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("the consultation's record: transfer %q from %q by %q; want attended from %q (the PSTN call's record) by 3999",
			rec.Transfer, rec.TransferFrom, rec.TransferBy, first.ID)
	}
}

// 3999 takes a PSTN call through node n1 and transfers it blind to 122099;
// server 11 hands the transferred call to node n2. Its record links to the
// PSTN call's record and names 3999.
func TestBlindTransferAcrossNodes(t *testing.T) {
	x := startXNode(t, sim.PhoneConfig{Server: "srv11", Ext: "3999", Behaviour: answers},
		sim.PhoneConfig{Server: "srv12", Ext: "2099", Behaviour: answers})
	in, first := blindAcrossNodes(t, x, nil)
	rec := x.record(t, "the transferred call", func(r *controller.Record) bool { return r.Transfer == "blind" })
	if rec.Node != "n2" || first.Node != "n1" {
		t.Fatalf("the PSTN call's record is %s's, the transferred call's %s's: want n1 and n2", first.Node, rec.Node)
	}
	if first.ID == "" || rec.TransferFrom != first.ID || rec.TransferBy != "3999" {
		t.Errorf("the transferred call's record: from %q by %q; want from %q (the PSTN call's record) by 3999",
			rec.TransferFrom, rec.TransferBy, first.ID)
	}
	if rec.Answered != "2099" || rec.CallID != in.UUID() {
		t.Errorf("the transferred call's record: answered by %q, channel %s; want 2099 and the PSTN caller's %s", rec.Answered, rec.CallID, in.UUID())
	}
}

// The same blind transfer, with Redis restarted without its data while the
// PSTN call is up: the transferred call is not linked (its story is gone),
// and it is connected and recorded as any other.
func TestBlindTransferAcrossNodesAfterRedisLostItsData(t *testing.T) {
	x := startXNode(t, sim.PhoneConfig{Server: "srv11", Ext: "3999", Behaviour: answers},
		sim.PhoneConfig{Server: "srv12", Ext: "2099", Behaviour: answers})
	_, first := blindAcrossNodes(t, x, func() {
		x.redis.Restart()
		// Counting resumes once the nodes have put their legs back: a
		// probe leg is counted again.
		probe := accounting.Hold{ID: "probe/in/0", Channel: "probe", Leg: accounting.Leg{Server: "probe", Kind: accounting.PSTNIn}}
		if !waitFor(15*time.Second, func() bool { return x.stores["n2"].Acquire(context.Background(), probe) == nil }) {
			t.Fatal("counting did not resume after Redis lost its data")
		}
		if err := x.stores["n2"].Release(context.Background(), probe.ID); err != nil {
			t.Fatal(err)
		}
		x.waitCount(t, "srv11", 1)
	})
	rec := x.record(t, "the transferred call", func(r *controller.Record) bool { return r.Transfer == "blind" })
	if rec.Node != "n2" || first.Node != "n1" {
		t.Fatalf("the PSTN call's record is %s's, the transferred call's %s's: want n1 and n2", first.Node, rec.Node)
	}
	if rec.TransferFrom != "" || rec.Answered != "2099" || rec.TransferBy != "3999" {
		t.Errorf("the transferred call's record after the data loss: from %q answered by %q by %q; want no link, 2099, 3999",
			rec.TransferFrom, rec.Answered, rec.TransferBy)
	}
}

// blindAcrossNodes places a PSTN call to 3999 through n1, runs meanwhile
// (if set), and has 3999 transfer it to 122099 with server 11 handing the
// transferred call to n2. It returns once the caller hung up after talking
// to 2099, with the PSTN call's record.
func blindAcrossNodes(t *testing.T, x *xnodeEnv, meanwhile func()) (*placed, controller.Record) {
	t.Helper()
	x.handTo("n1")
	in := &placed{server: "srv11", from: "+4915112345678", dialed: "+4930100100", at: time.Now()}
	var err error
	if in.Call, err = x.lab.CallFromPSTN(ctxT(t), "srv11", in.dialed, in.from, sim.CallOptions{}); err != nil {
		t.Fatal(err)
	}
	bridged(t, in)
	x.waitAnswered(t, "n1", "srv11", "3999")
	x.waitCount(t, "srv11", 1)
	if meanwhile != nil {
		meanwhile()
	}
	x.handTo("n2")
	if err := x.lab.BlindTransfer("srv11", in.UUID(), "122099"); err != nil {
		t.Fatal(err)
	}
	x.waitAnswered(t, "n2", "srv11", "2099")
	if rs := x.lab.Rings("srv12", "2099"); len(rs) != 1 || rs[0].Caller.Number != in.from {
		t.Fatalf("2099 rings: %+v, want one showing the PSTN caller %s", rs, in.from)
	}
	x.waitCount(t, "srv11", 2)
	x.waitCount(t, "srv12", 1)
	hangup(t, in)
	x.waitCount(t, "srv11", 0)
	x.waitCount(t, "srv12", 0)
	first := x.record(t, "the PSTN call", func(r *controller.Record) bool { return of(in)(r) && r.Transfer == "" })
	return in, first
}
