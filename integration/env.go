// Package integration runs callctl against media servers: the scenario suite
// (in the tests of this package) places real calls through a callctl node and
// simulated FreeSWITCH and Asterisk servers (integration/sim), or real ones
// when their addresses are given in the environment. This file builds the
// simulated environment: a lab of servers, the lab plan adapted to it, and a
// node serving them.
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/callctl/callctl/adapters/asterisk"
	"github.com/callctl/callctl/adapters/freeswitch"
	"github.com/callctl/callctl/adapters/memory"
	"github.com/callctl/callctl/controller"
	"github.com/callctl/callctl/controller/provision"
	"github.com/callctl/callctl/examples"
	"github.com/callctl/callctl/integration/sim"
	"github.com/callctl/callctl/node"
)

// Fleet says what kind of media server each lab server is.
type Fleet struct {
	Name  string
	Kinds map[string]string // srv11, srv12 -> freeswitch | asterisk
}

// The fleets every scenario runs on.
var (
	FreeSWITCHFleet = Fleet{Name: "freeswitch", Kinds: map[string]string{"srv11": provision.KindFreeSWITCH, "srv12": provision.KindFreeSWITCH}}
	AsteriskFleet   = Fleet{Name: "asterisk", Kinds: map[string]string{"srv11": provision.KindAsterisk, "srv12": provision.KindAsterisk}}
	MixedFleet      = Fleet{Name: "mixed", Kinds: map[string]string{"srv11": provision.KindFreeSWITCH, "srv12": provision.KindAsterisk}}
	Fleets          = []Fleet{FreeSWITCHFleet, AsteriskFleet, MixedFleet}
)

// Lab addresses: the signalling addresses the simulator gives each server
// and the PSTN (the lab plan trusts them as trunks).
var serverIPs = map[string]string{"srv11": "127.0.0.11", "srv12": "127.0.0.12"}

const (
	pstnIP  = "127.0.0.99"
	ariApp  = "callctl"
	eslPass = "ClueCon"
	ariUser = "ari"
	ariPass = "ari"
)

// Options shape an environment.
type Options struct {
	// Edit changes the lab plan before it is compiled (limits, timeouts).
	Edit func(*provision.Document)
	// Phones and PSTN set what the simulated endpoints do at the start.
	Phones []sim.PhoneConfig
	PSTN   []sim.PSTNConfig
	// PSTNDefault answers every other PSTN number (nil: they answer after
	// 50 ms and stay up).
	PSTNDefault *sim.Behaviour
	Logger      *slog.Logger
	// LabLogger logs the simulated servers (nil: Logger).
	LabLogger *slog.Logger
	// State replaces the in-memory state (a cluster test brings Redis).
	State node.State
	// NodeID names the node (n1).
	NodeID string
	// Node adjusts the node's options before it starts.
	Node func(*node.Options)
}

// Env is a running lab with a callctl node serving it.
type Env struct {
	Fleet   Fleet
	Lab     *sim.Lab
	Node    *node.Node
	Plan    *provision.Plan
	State   node.State
	Records *Recorder
	Log     *slog.Logger

	closeOnce sync.Once
}

// Recorder keeps every call record the node writes, and passes them on.
type Recorder struct {
	node.State
	mu   sync.Mutex
	recs []controller.Record
	more chan struct{}
}

// Write keeps the record and hands it to the state's own sink.
func (r *Recorder) Write(ctx context.Context, rec *controller.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, *rec)
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
	return r.State.Write(ctx, rec)
}

// Wait returns the first record matching match, waiting for it.
func (r *Recorder) Wait(ctx context.Context, match func(*controller.Record) bool) (controller.Record, error) {
	for {
		r.mu.Lock()
		for i := range r.recs {
			if match(&r.recs[i]) {
				rec := r.recs[i]
				r.mu.Unlock()
				return rec, nil
			}
		}
		more := r.more
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return controller.Record{}, fmt.Errorf("waiting for a call record: %w", ctx.Err())
		case <-more:
		}
	}
}

// All returns the records written so far.
func (r *Recorder) All() []controller.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]controller.Record(nil), r.recs...)
}

// freePort finds a loopback port for a listener whose address the lab must
// know before the listener exists.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// Start starts a lab of fleet and a node serving it with the lab plan.
func Start(ctx context.Context, fleet Fleet, opt Options) (*Env, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.NodeID == "" {
		opt.NodeID = "n1"
	}
	eslAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := LabConfig(fleet, []string{eslAddr})
	cfg.Phones = opt.Phones
	cfg.PSTN = opt.PSTN
	cfg.PSTNDefault = opt.PSTNDefault
	if cfg.PSTNDefault == nil {
		cfg.PSTNDefault = &sim.Behaviour{Mode: "answer", RingFor: 50 * time.Millisecond}
	}
	cfg.Logger = opt.Logger
	if opt.LabLogger != nil {
		cfg.Logger = opt.LabLogger
	}
	lab, err := sim.StartLab(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	e := &Env{Fleet: fleet, Lab: lab, Log: opt.Logger}
	plan, err := e.plan(opt.Edit)
	if err != nil {
		lab.Close()
		return nil, err
	}
	e.Plan = plan
	state := opt.State
	if state == nil {
		state = memory.New(memory.Options{Logger: opt.Logger})
	}
	e.Records = &Recorder{State: state, more: make(chan struct{})}
	e.State = e.Records
	nopt := Tuned(node.Options{ID: opt.NodeID, ESLListen: eslAddr, State: e.Records, Logger: opt.Logger})
	if opt.Node != nil {
		opt.Node(&nopt)
	}
	e.Node, err = node.Start(ctx, plan, nopt)
	if err != nil {
		lab.Close()
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := e.Node.Ready(rctx, e.asteriskServers()...); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Tuned shortens a node's reconnection delays for tests and demos: a
// simulated server that restarts is back in milliseconds.
func Tuned(o node.Options) node.Options {
	o.ReconcileEvery = 500 * time.Millisecond
	o.LegGrace = 5 * time.Second
	o.FreeSWITCHConn = func(c *freeswitch.MediaServerConfig) {
		c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	o.Asterisk = func(c *asterisk.Config) {
		c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	return o
}

func (e *Env) asteriskServers() []string {
	var out []string
	for name, kind := range e.Fleet.Kinds {
		if kind == provision.KindAsterisk {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// LabConfig is the simulated lab for fleet, its FreeSWITCH servers handing
// calls to the controllers in order.
func LabConfig(fleet Fleet, controllers []string) sim.Config {
	cfg := sim.Config{PSTNIP: pstnIP}
	names := sortedNames(fleet)
	for _, name := range names {
		sc := sim.ServerConfig{Name: name, Kind: fleet.Kinds[name], IP: serverIPs[name], Trunks: map[string]string{}}
		for _, peer := range names {
			if peer != name {
				sc.Trunks[peer] = peer
			}
		}
		if sc.Kind == provision.KindFreeSWITCH {
			sc.Controllers = controllers
			sc.Password = eslPass
		} else {
			sc.App = ariApp // the ARI user is ari/ari
		}
		cfg.Servers = append(cfg.Servers, sc)
	}
	return cfg
}

func sortedNames(f Fleet) []string {
	names := make([]string, 0, len(f.Kinds))
	for n := range f.Kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// plan is examples/lab.yaml with its servers pointed at the lab.
func (e *Env) plan(edit func(*provision.Document)) (*provision.Plan, error) {
	doc, err := LabDocument(e.Fleet, func(name string) (string, string) {
		s := e.Lab.Server(name)
		if e.Fleet.Kinds[name] == provision.KindFreeSWITCH {
			return s.ESLAddr(), ""
		}
		return "", s.ARIURL()
	})
	if err != nil {
		return nil, err
	}
	if edit != nil {
		edit(doc)
	}
	plan, probs := provision.Compile(doc, nil)
	if plan == nil {
		return nil, &provision.InvalidError{Problems: probs}
	}
	return plan, nil
}

// LabDocument is the lab plan for fleet; addr gives each server's event
// socket address or ARI URL.
func LabDocument(fleet Fleet, addr func(name string) (esl, ari string)) (*provision.Document, error) {
	doc, _, probs := provision.Decode(examples.LabName, examples.Lab)
	if doc == nil {
		return nil, &provision.InvalidError{Problems: probs}
	}
	names := sortedNames(fleet)
	var servers []provision.Server
	for _, name := range names {
		var orig *provision.Server
		for i := range doc.Servers {
			if doc.Servers[i].Name == name {
				orig = &doc.Servers[i]
			}
		}
		if orig == nil {
			return nil, fmt.Errorf("lab plan has no server %s", name)
		}
		s := provision.Server{Name: name, Kind: fleet.Kinds[name], Prefix: orig.Prefix, ChannelLimit: orig.ChannelLimit,
			Trunks: map[string]provision.Trunk{}}
		eslAddr, ariURL := addr(name)
		if s.Kind == provision.KindFreeSWITCH {
			s.FreeSWITCH = &provision.ESLConn{Address: eslAddr, Password: eslPass, Context: "default"}
			s.PSTN = &provision.Trunk{Dial: "sofia/gateway/pstn/{dest}", From: []string{pstnIP}}
		} else {
			s.Asterisk = &provision.ARIConn{URL: ariURL, User: ariUser, Password: ariPass, App: ariApp, Context: "default"}
			s.PSTN = &provision.Trunk{Dial: "PJSIP/{dest}@pstn", From: []string{"pstn"}}
		}
		for _, peer := range names {
			if peer == name {
				continue
			}
			t := provision.Trunk{}
			if s.Kind == provision.KindFreeSWITCH {
				t.Dial = "sofia/gateway/" + peer + "/{dest}"
				t.From = []string{serverIPs[peer]}
			} else {
				t.Dial = "PJSIP/{dest}@" + peer
				t.From = []string{peer}
			}
			s.Trunks[peer] = t
		}
		servers = append(servers, s)
	}
	doc.Servers = servers
	// Hunts ring each member 3 s here rather than 20: the suite waits for
	// no-answers.
	doc.Settings.RingTimeout = provision.Duration(3 * time.Second)
	return doc, nil
}

// DocumentYAML renders a document (for a node started from a file).
func DocumentYAML(doc *provision.Document) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// Count returns the counted legs held now on a server or org.
func (e *Env) Count(ctx context.Context, scope, name string) int {
	n, err := e.State.Count(ctx, scope, name)
	if err != nil {
		return -1
	}
	return n
}

// Close stops the node and the lab.
func (e *Env) Close() {
	e.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if e.Node != nil {
			if err := e.Node.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				e.Log.Warn("node shutdown", "err", err)
			}
		}
		e.Lab.Close()
	})
}
