// Command labcalls serves the lab in containers (docker/compose.yaml):
//
//	labcalls plan       prints the plan its callctl nodes run (the lab plan on
//	                    the lab's FreeSWITCH and Asterisk; secrets from the
//	                    environment, as docker/.env sets them)
//	labcalls examples   places the seeds' worked examples through the running
//	                    lab with real SIP callers and phones (sipp), and prints
//	                    what the callers and phones got and callctl's records;
//	                    exit 1 when one did not go as the seed says
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/callctl/callctl/integration"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "plan" && os.Args[1] != "examples") {
		fmt.Fprintln(os.Stderr, "usage: labcalls plan|examples")
		os.Exit(2)
	}
	sec, err := integration.DockerSecretsFrom(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labcalls:", err)
		os.Exit(2)
	}
	if os.Args[1] == "plan" {
		plan, err := integration.DockerLabPlan(sec)
		if err != nil {
			fmt.Fprintln(os.Stderr, "labcalls: plan:", err)
			os.Exit(1)
		}
		fmt.Print("# The plan of the lab in containers, made by `labcalls plan` (docker/lab.sh up).\n", string(plan))
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "labcalls-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "labcalls:", err)
		os.Exit(1)
	}
	lab := integration.NewDockerLab(sec, dir)
	ph, err := lab.Phones(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labcalls: the SIP phones:", err)
		os.Exit(1)
	}
	pstn, err := lab.PSTN(ctx)
	if err != nil {
		ph.Close()
		fmt.Fprintln(os.Stderr, "labcalls: the PSTN's far end:", err)
		os.Exit(1)
	}
	exs := lab.RunDockerExamples(ctx, ph, pstn)
	ph.Close()
	pstn.Close()
	failed := 0
	for _, ex := range exs {
		verdict := "ok"
		if len(ex.Failed) > 0 {
			verdict, failed = "FAILED", failed+1
		}
		fmt.Printf("── %s: %s\n   seed: %s\n", ex.Name, verdict, ex.Want)
		for _, g := range ex.Got {
			fmt.Printf("   %s\n", g)
		}
		for _, f := range ex.Failed {
			fmt.Printf("   FAILED: %s\n", f)
		}
	}
	fmt.Printf("%d examples, %d as the seeds say, %d not\n", len(exs), len(exs)-failed, failed)
	if failed > 0 {
		fmt.Printf("the SIP messages are kept in %s\n", dir)
		os.Exit(1)
	}
	os.RemoveAll(dir)
}
