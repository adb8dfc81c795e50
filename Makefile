# callctl — build, test and try it.
GO      ?= go
PKGS    ?= ./...
BIN     := bin/callctl

LAB     := integration/lab/lab.sh

.PHONY: all build run test test-real check unit bench bench-real fuzz demo clean lab-install lab-up lab-down docker-lab docker-lab-down docker-lab-examples

all: build

build:
	$(GO) build -o $(BIN) ./cmd/callctl

# Runs a node on its embedded defaults: the lab plan, in-memory state.
run:
	$(GO) run ./cmd/callctl serve

# A first look without FreeSWITCH or Asterisk: callctl against simulated servers
# (integration/sim), placing the lab plan's worked examples as calls.
# DEMOFLAGS="-fleet freeswitch -json-logs" picks the fleet and the log format.
demo:
	$(GO) run ./integration/demo $(DEMOFLAGS)

# The whole suite: formatting, vet, and every test (unit, simulator scenarios,
# real Redis, and the real-server scenarios on the lab's FreeSWITCH and
# Asterisk when they are installed: see integration/lab) with the race
# detector. The lab is started for the run and stopped after it, unless it
# was running already.
test: check
	$(LAB) run -- $(GO) test -race -count=1 -timeout 25m $(PKGS)

# Only the real-server scenarios, verbosely.
test-real:
	$(LAB) run -- $(GO) test -race -count=1 -timeout 20m -v -run 'TestRealServers' ./integration/

# The real-server lab: FreeSWITCH 1.10.12 x2 and Asterisk 22.10.1 x2 on 127.0.0.1.
lab-install:
	$(LAB) install
lab-up:
	$(LAB) start
lab-down:
	$(LAB) stop

# The lab in containers (docker/): FreeSWITCH, Asterisk, Redis and two callctl nodes on
# 127.0.0.1, healthy when the command returns; see README "Lab in containers".
docker-lab:
	docker/lab.sh up
docker-lab-down:
	docker/lab.sh down
docker-lab-examples:
	docker/lab.sh examples

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -count=1 ./controller/... ./cmd/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# callctl's hunt against the media server's own (the lab's native context: FreeSWITCH's
# bridge a|b|c on fs1, Asterisk's Dial of each member in turn on ast1), side by side
# (BENCHN iterations of each kind, default 25): medians and their ratio, per kind.
BENCHN ?= 25
bench-real:
	$(LAB) run -- $(GO) test -run '^$$' -bench '^BenchmarkRealHunt$$' -benchtime $(BENCHN)x ./integration/

# Each fuzz target for FUZZTIME (default 1m).
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 3s ./controller/provision/
	$(GO) test -run '^$$' -fuzz '^FuzzValidDialed$$' -fuzztime $(FUZZTIME) ./controller/provision/
	$(GO) test -run '^$$' -fuzz '^FuzzRoute$$' -fuzztime $(FUZZTIME) ./controller/routing/
	$(GO) test -run '^$$' -fuzz '^FuzzReadFrame$$' -fuzztime $(FUZZTIME) ./adapters/freeswitch/esl/
	$(GO) test -run '^$$' -fuzz '^FuzzHandleFrame$$' -fuzztime $(FUZZTIME) ./adapters/asterisk/
	$(GO) test -run '^$$' -fuzz '^FuzzParseEndpoint$$' -fuzztime $(FUZZTIME) ./adapters/asterisk/

clean:
	rm -rf bin
