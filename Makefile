# callctl — build, test and try it.
GO      ?= go
PKGS    ?= ./...
BIN     := bin/callctl

.PHONY: all build run test check unit bench fuzz demo clean

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
# real Redis) with the race detector.
test: check
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -count=1 ./controller/... ./cmd/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Each fuzz target for FUZZTIME (default 1m).
FUZZTIME ?= 1m
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 3s ./controller/provision/
	$(GO) test -run '^$$' -fuzz '^FuzzValidDialed$$' -fuzztime $(FUZZTIME) ./controller/provision/
	$(GO) test -run '^$$' -fuzz '^FuzzRoute$$' -fuzztime $(FUZZTIME) ./controller/routing/

clean:
	rm -rf bin
