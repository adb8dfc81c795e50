// Command demo shows callctl at work on a machine without FreeSWITCH or
// Asterisk. It starts simulated media servers (integration/sim: a FreeSWITCH
// that speaks the event socket, an Asterisk that speaks ARI), one callctl
// node serving them with the lab plan (examples/lab.yaml), and places the
// worked examples of the product's source material as calls. It prints what
// an operator would watch: callctl's log lines, what each phone saw, and
// each call record.
//
//	go run ./integration/demo [-fleet freeswitch|asterisk|mixed] [-json-logs]
//
// Everything is a simulation in this process, on 127.0.0.1; nothing else is
// contacted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/callctl/callctl/integration"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// Once the first signal starts the stop, a second one kills the process
	// the usual way.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole demo: it parses args, runs every example and returns the
// exit code (0 done, 1 failed, 2 bad usage, 130 interrupted).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fleetName := fs.String("fleet", "mixed", "media servers to simulate: freeswitch (srv11 and srv12 FreeSWITCH), asterisk (both Asterisk) or mixed (srv11 FreeSWITCH, srv12 Asterisk)")
	jsonLogs := fs.Bool("json-logs", false, "write callctl's log lines as JSON instead of text")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./integration/demo [-fleet freeswitch|asterisk|mixed] [-json-logs]")
		fmt.Fprintln(fs.Output(), "Runs callctl against simulated FreeSWITCH and Asterisk servers and places the lab plan's worked examples as calls.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	fleet, ok := fleetByName(*fleetName)
	if !ok {
		fmt.Fprintf(stderr, "demo: -fleet %q: want freeswitch, asterisk or mixed\n", *fleetName)
		return 2
	}
	err := runDemo(ctx, fleet, *jsonLogs, &syncWriter{w: stdout})
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "demo: interrupted; the calls in progress were hung up and everything is stopped")
		return 130
	default:
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
}

func fleetByName(name string) (integration.Fleet, bool) {
	for _, f := range integration.Fleets {
		if f.Name == name {
			return f, true
		}
	}
	return integration.Fleet{}, false
}
