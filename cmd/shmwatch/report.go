package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"go.uber.org/zap"

	"github.com/shmwatch/shmwatch/agent"
)

type scanCmd struct {
	cmd        *kingpin.CmdClause
	flags      *nodeFlags
	output     string
	containers bool
	sandbox    bool
	growth     time.Duration
}

func newScanCmd(app *kingpin.Application, f *nodeFlags) *scanCmd {
	s := &scanCmd{flags: f}
	s.cmd = app.Command("scan", "One pass over this host: every pod's shm, memory and binding limit.")
	s.cmd.Flag("output", "table or json.").Short('o').Default("table").EnumVar(&s.output, "table", "json")
	s.cmd.Flag("containers", "Also a row per container.").BoolVar(&s.containers)
	s.cmd.Flag("sandbox", "Also read the memory of the sandbox (pause) containers.").BoolVar(&s.sandbox)
	s.cmd.Flag("growth", "Sample each pod's tmpfs and memory cgroup every second for this long after the pass and show the time until each is full at that rate (least squares; e.g. 5s). 0: one pass, no time to full.").Default("0s").DurationVar(&s.growth)
	return s
}

func (s *scanCmd) run(log *zap.Logger) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	col, meta, err := s.flags.openNode(ctx, log, agent.Config{SkipSandboxMemory: !s.sandbox})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch scan:", err)
		return 1
	}
	s.flags.waitForAPI(ctx, meta)
	startOOMWatch(ctx, col, "auto", log) // v2: each pod's kill count from its memory.events
	snap, err := col.Collect(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch scan:", err)
		return 1
	}
	if s.growth > 0 {
		snap = col.WithGrowth(ctx, snap, s.growth)
	}
	if s.output == "json" {
		err = agent.WriteJSON(os.Stdout, snap)
	} else {
		err = agent.WriteTable(os.Stdout, snap, s.containers)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch scan:", err)
		return 1
	}
	return 0
}

type auditCmd struct {
	cmd      *kingpin.CmdClause
	flags    *nodeFlags
	output   string
	interval time.Duration
}

func newAuditCmd(app *kingpin.Application, f *nodeFlags) *auditCmd {
	a := &auditCmd{flags: f}
	a.cmd = app.Command("audit", "Node memcg leak audit; exit 0 ok, 1 warnings, 2 critical, 3 could not run.")
	a.cmd.Flag("output", "text or json.").Short('o').Default("text").EnumVar(&a.output, "text", "json")
	a.cmd.Flag("interval", "Time between the two samples that show the dying memcg trend.").Default("2s").DurationVar(&a.interval)
	return a
}

func (a *auditCmd) run(log *zap.Logger) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The audit reports the node: no pod's peak nor sandbox memory.
	col, meta, err := a.flags.openNode(ctx, log, agent.Config{SkipPeak: true, SkipSandboxMemory: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch audit:", err)
		return 3
	}
	a.flags.waitForAPI(ctx, meta)
	first, err := col.Collect(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch audit:", err)
		return 3
	}
	time.Sleep(a.interval)
	second, err := col.Collect(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch audit:", err)
		return 3
	}
	report := agent.NewAudit(first, second)
	if a.output == "json" {
		err = report.WriteJSON(os.Stdout)
	} else {
		err = report.WriteText(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shmwatch audit:", err)
		return 3
	}
	return report.ExitCode()
}
