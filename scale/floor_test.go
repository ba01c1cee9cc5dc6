package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/tokenwarden/tokenwarden/internal/results"
	"github.com/tokenwarden/tokenwarden/internal/testenv"
	"github.com/tokenwarden/tokenwarden/providers/schedule"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// TestTemporalFloor measures Temporal's own cost on this machine with no
// Tokenwarden in it: workflows that each run one no-op activity and then
// sleep, in a loop, as long as a link with the run's token lifetime
// sleeps between refreshes. That is the least a link workflow can do (it
// must reach the provider from an activity and sleep until the next
// refresh); a real link adds Vault, its own PostgreSQL rows and the
// provider. So what the floor costs bounds what any design of one
// workflow per link can reach on these cores, and TestScale's figures
// read against it say how much of a link's cost is Tokenwarden's.
//
// make scale-floor runs it on the real Temporal server with the
// configuration of make scale (LINKS= workflows, TOKEN_LIFETIME=,
// DURATION=) and writes docs/results/scale-floor-<n>-workflows.md; make
// test runs a short version on the test stack.
func TestTemporalFloor(t *testing.T) {
	c := loadConfig(t)
	if !c.long {
		c.links, c.run = 20, 10*time.Second
	}
	tc, _ := testenv.Temporal(t)
	f := &floor{config: c, interval: refreshInterval(c.life)}
	if !c.long {
		f.interval = 2 * time.Second
	}
	w := sdkworker.New(tc, "floor", sdkworker.Options{})
	w.RegisterWorkflowWithOptions(f.workflow, workflow.RegisterOptions{Name: "floor"})
	w.RegisterActivityWithOptions(f.activity, activity.RegisterOptions{Name: "floor"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ps := parts(nil, strings.TrimSuffix(os.Getenv("TOKENWARDEN_TEST_STACK"), "/stack.json"))
	ps = append(ps[1:3], part{"worker and client", func() []int { return []int{os.Getpid()} }})
	ctx := context.Background()

	cpu0, began := cpuSnapshot(ps), time.Now()
	f.start(ctx, t, tc)
	for f.firsts.Load() < int64(c.links) {
		if time.Since(began) > 30*time.Minute+time.Duration(c.links)*20*time.Millisecond {
			t.Fatalf("only %d of %d workflows ran their first activity", f.firsts.Load(), c.links)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.startRate = float64(c.links) / time.Since(began).Seconds()
	f.startCPU = diff(cpuSnapshot(ps), cpu0)

	cpu1, cycles0 := cpuSnapshot(ps), f.cycles.Load()
	time.Sleep(c.run)
	f.runCPU, f.runCycles = diff(cpuSnapshot(ps), cpu1), f.cycles.Load()-cycles0
	if f.runCycles == 0 {
		t.Fatalf("no cycle in %s of %d workflows sleeping %s", c.run, c.links, f.interval)
	}
	f.write(t)
}

// refreshInterval is how long a link sleeps between refreshes of tokens
// that live life, by the default schedule.
func refreshInterval(life time.Duration) time.Duration {
	now := time.Now()
	return workflows.NextRefresh(schedule.Schedule{}, now, now, now.Add(life), time.Time{}, "floor").Sub(now)
}

// floor is one run: its workflows, and what it measured.
type floor struct {
	config
	interval         time.Duration
	firsts, cycles   atomic.Int64
	startRate        float64
	startCPU, runCPU map[string]float64
	runCycles        int64
}

func (f *floor) workflow(ctx workflow.Context, interval time.Duration) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	for cycle := 0; ; cycle++ {
		if err := workflow.ExecuteActivity(ctx, "floor", cycle).Get(ctx, nil); err != nil {
			return err
		}
		if err := workflow.Sleep(ctx, interval); err != nil {
			return err
		}
	}
}

func (f *floor) activity(_ context.Context, cycle int) error {
	if cycle == 0 {
		f.firsts.Add(1)
	} else {
		f.cycles.Add(1)
	}
	return nil
}

// start starts the run's workflows, 32 at a time as the gateway's
// callers do in TestScale.
func (f *floor) start(ctx context.Context, t *testing.T, tc client.Client) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(f.links); i = next.Add(1) - 1 {
				opts := client.StartWorkflowOptions{ID: fmt.Sprintf("floor-%d", i), TaskQueue: "floor"}
				if _, err := tc.ExecuteWorkflow(ctx, opts, "floor", f.interval); err != nil {
					t.Errorf("starting workflow %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func (f *floor) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| workflows | sleep per cycle | started (workflows/s, to their first activity) | run | cycles in the run (/s) |\n|---:|---|---:|---|---:|\n")
	fmt.Fprintf(&b, "| %d | %s | %.1f | %s | %d (%.1f) |\n\n", f.links, f.interval.Round(time.Second), f.startRate, f.run,
		f.runCycles, float64(f.runCycles)/f.run.Seconds())
	b.WriteString("CPU milliseconds by process:\n\n| | Temporal | PostgreSQL | worker and client | all |\n|---|---:|---:|---:|---:|\n")
	row := func(name string, cpu map[string]float64, n int64) {
		all := 0.0
		fmt.Fprintf(&b, "| %s |", name)
		for _, p := range []string{"Temporal", "PostgreSQL", "worker and client"} {
			fmt.Fprintf(&b, " %.1f |", 1000*cpu[p]/float64(n))
			all += cpu[p]
		}
		fmt.Fprintf(&b, " %.1f |\n", 1000*all/float64(n))
	}
	row("per workflow started", f.startCPU, int64(f.links))
	row("per cycle", f.runCPU, f.runCycles)
	cores := float64(runtime.NumCPU())
	perStart, perCycle := f.cpuPer(f.startCPU, int64(f.links)), f.cpuPer(f.runCPU, f.runCycles)
	fmt.Fprintf(&b, "\nWith nothing else on them, these %.0f cores could start at most %.0f such workflows/s and run %.0f cycles/s "+
		"(%.0f workflows sleeping %s a cycle) at this cost, counting Temporal, its PostgreSQL and the worker alone.\n",
		cores, cores/perStart, cores/perCycle, cores/perCycle*f.interval.Seconds(), f.interval.Round(time.Second))
	return b.String()
}

// cpuPer is the CPU seconds of every part per unit of n.
func (f *floor) cpuPer(cpu map[string]float64, n int64) float64 {
	all := 0.0
	for _, v := range cpu {
		all += v
	}
	return all / float64(max(n, 1))
}

func (f *floor) write(t *testing.T) {
	doc := f.table()
	t.Log("\n" + doc)
	if f.out == "" {
		return
	}
	title := fmt.Sprintf("Temporal's floor: %d workflows of one no-op activity and one timer per cycle", f.links)
	cmd := fmt.Sprintf("make scale-floor LINKS=%d TOKEN_LIFETIME=%s DURATION=%s", f.links, f.life, f.run)
	full := results.ThisMachine().Header(title, cmd) + doc
	if err := os.WriteFile(filepath.Join(f.out, fmt.Sprintf("scale-floor-%d-workflows.md", f.links)), []byte(full), 0o644); err != nil {
		t.Error(err)
	}
}
