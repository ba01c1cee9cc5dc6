package scale

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/tokenwarden/tokenwarden/internal/devstack"
	"github.com/tokenwarden/tokenwarden/internal/e2e"
	"github.com/tokenwarden/tokenwarden/internal/results"
	"github.com/tokenwarden/tokenwarden/providers/schedule"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// report is what a run measured.
type report struct {
	config
	// Links created, and active when the enrollment phase ended (fewer
	// than links when enrollWithin cut it short).
	created, active   int
	enrollRate        float64
	enrollCPU, runCPU map[string]float64
	runRefreshes      int64
	readCounts
	providerRefreshes, linkRefreshes int64
	lagP50, lagP99, lagMax           time.Duration
	eventsPerRefresh                 float64
	actionsPerRefresh                float64
	bytesPerLink                     float64
	// Worker memory: before enrollment, with every link enrolled and
	// asleep, and the peak.
	baseRSSKiB, idleRSSKiB, peakRSSKiB int64
}

// measureAudit reads refresh lags and storage from PostgreSQL.
func (r *report) measureAudit(ctx context.Context, t *testing.T, s *e2e.Stack) {
	rows, err := s.Pool.Query(ctx, `SELECT extract(epoch FROM occurred_at - (detail->>'scheduled_for')::timestamptz)
		FROM link_events WHERE type = 'refreshed' AND detail ? 'scheduled_for'`)
	if err != nil {
		t.Fatal(err)
	}
	var lags []float64
	for rows.Next() {
		var l float64
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lags = append(lags, l)
	}
	rows.Close()
	sort.Float64s(lags)
	at := func(q float64) time.Duration {
		if len(lags) == 0 {
			return 0
		}
		return time.Duration(lags[min(len(lags)-1, int(q*float64(len(lags))))] * float64(time.Second))
	}
	r.lagP50, r.lagP99, r.lagMax = at(0.5), at(0.99), at(1)
	var bytes int64
	if err := s.Pool.QueryRow(ctx, `SELECT pg_total_relation_size('links') + pg_total_relation_size('link_events')`).Scan(&bytes); err != nil {
		t.Fatal(err)
	}
	r.bytesPerLink = float64(bytes) / float64(max(r.active, 1))
}

// billable are the history events Temporal Cloud bills as actions.
var billable = map[enumspb.EventType]bool{
	enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:                  true,
	enumspb.EVENT_TYPE_TIMER_STARTED:                            true,
	enumspb.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:        true,
	enumspb.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:             true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:              true,
	enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:       true,
	enumspb.EVENT_TYPE_MARKER_RECORDED:                          true,
	enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: true,
}

// measureHistories averages the history events and billable actions of a
// routine refresh over a sample of links: whole cycles only, from the
// first wake-up (TimerFired; what precedes it is enrollment, whose last
// activities may complete after the first sleep began) to the last sleep
// (TimerStarted), per Refresh activity in that span.
func (r *report) measureHistories(ctx context.Context, t *testing.T, s *e2e.Stack, ids []string) {
	var events, actions, refreshes int
	for _, id := range ids[:min(len(ids), 20)] {
		it := s.Temporal.GetWorkflowHistory(ctx, workflows.WorkflowID(e2e.Tenant, id), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var ev, act, ref int // counted since the last whole cycle
		woke := false
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			woke = woke || e.GetEventType() == enumspb.EVENT_TYPE_TIMER_FIRED
			if !woke {
				continue
			}
			ev++
			if billable[e.GetEventType()] {
				act++
			}
			if a := e.GetActivityTaskScheduledEventAttributes(); a != nil && a.GetActivityType().GetName() == workflows.ActivityRefresh {
				ref++
			}
			if e.GetEventType() == enumspb.EVENT_TYPE_TIMER_STARTED {
				events, actions, refreshes = events+ev, actions+act, refreshes+ref
				ev, act, ref = 0, 0, 0
			}
		}
	}
	r.eventsPerRefresh = float64(events) / float64(max(refreshes, 1))
	r.actionsPerRefresh = float64(actions) / float64(max(refreshes, 1))
}

func (r *report) cpuPer1000(part string) float64 {
	return r.runCPU[part] / float64(max(r.runRefreshes, 1)) * 1000
}

func (r *report) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "| links | workers | token lifetime | run | enrolled (links/s) | refresh lag p50 / p99 / max | token reads (/s) / failed | served expired | refreshes at provider / counted by links | history events / billable actions per routine refresh | PostgreSQL bytes per link | worker RSS: idle links' share per 1 000 / peak |\n")
	fmt.Fprintf(&b, "|---:|---:|---|---|---:|---|---:|---:|---|---|---:|---|\n")
	fmt.Fprintf(&b, "| %s | %d | %s | %s | %.1f | %s / %s / %s | %d (%.0f) / %d | %d | %d / %d | %.1f / %.1f | %.0f | %.1f MiB / %.0f MiB |\n",
		r.linksCell(), r.workers, r.life, r.run, r.enrollRate, r.lagP50.Round(time.Millisecond), r.lagP99.Round(time.Millisecond), r.lagMax.Round(time.Millisecond),
		r.reads, float64(r.reads)/r.run.Seconds(), r.failed, r.expired, r.providerRefreshes, r.linkRefreshes, r.eventsPerRefresh, r.actionsPerRefresh,
		r.bytesPerLink, float64(r.idleRSSKiB-r.baseRSSKiB)/1024/float64(max(r.active, 1))*1000, float64(r.peakRSSKiB)/1024)
	b.WriteString(r.readLine())
	b.WriteString("\nCPU seconds by process")
	fmt.Fprintf(&b, " (enrollment of all links; per 1 000 refreshes during the run, %d refreshes, %.1f/s, reads included):\n\n",
		r.runRefreshes, float64(r.runRefreshes)/r.run.Seconds())
	names := []string{"workers", "Temporal", "PostgreSQL", "Vault", "gateway and callers"}
	b.WriteString("| | " + strings.Join(names, " | ") + " | all |\n|---|" + strings.Repeat("---:|", len(names)+1) + "\n")
	row := func(label string, v func(string) float64) {
		b.WriteString("| " + label + " |")
		sum := 0.0
		for _, n := range names {
			sum += v(n)
			fmt.Fprintf(&b, " %.1f |", v(n))
		}
		fmt.Fprintf(&b, " %.1f |\n", sum)
	}
	row("enrollment", func(n string) float64 { return r.enrollCPU[n] })
	row("per 1 000 refreshes", r.cpuPer1000)
	b.WriteString(r.busiest())
	b.WriteString(r.sizing())
	return b.String()
}

// readLine says how long served token reads took, and why the failed
// ones failed.
func (r *report) readLine() string {
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	at := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Round(100 * time.Microsecond)
	}
	line := fmt.Sprintf("\nToken reads served in p50 %s, p99 %s, max %s", at(0.5), at(0.99), at(1))
	if r.failed == 0 {
		return line + "; none failed.\n"
	}
	var causes []string
	for c, n := range r.causes {
		causes = append(causes, fmt.Sprintf("%d × %s", n, c))
	}
	slices.Sort(causes)
	return line + "; failed reads by answer: " + strings.Join(causes, ", ") + ".\n"
}

func (r *report) linksCell() string {
	if r.active < r.links {
		return fmt.Sprintf("%d active of %d (%d created) after %s", r.active, r.links, r.created, r.enrollWithin)
	}
	return fmt.Sprint(r.links)
}

// busiest names where the enrollment's CPU went: on this machine, with
// every part sharing its cores, the bottleneck.
func (r *report) busiest() string {
	type share struct {
		name string
		cpu  float64
	}
	var shares []share
	total := 0.0
	for n, v := range r.enrollCPU {
		shares = append(shares, share{n, v})
		total += v
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].cpu > shares[j].cpu })
	if len(shares) < 2 || total == 0 {
		return ""
	}
	return fmt.Sprintf("\nEnrollment spent %.0f CPU seconds, %.0f ms per link; most in %s (%.0f %%), then %s (%.0f %%).\n",
		total, total/float64(max(r.active, 1))*1000, shares[0].name, 100*shares[0].cpu/total, shares[1].name, 100*shares[1].cpu/total)
}

// sizing turns the run's CPU per refresh into capacity per core: what a
// cluster needs for a given number of links. A link refreshes once per
// token lifetime less the default schedule's margin (workflows.NextRefresh).
func (r *report) sizing() string {
	perCore := func(parts ...string) float64 {
		sum := 0.0
		for _, p := range parts {
			sum += r.cpuPer1000(p)
		}
		if sum == 0 {
			return 0
		}
		return 1000 / sum
	}
	w, tp := perCore("workers"), perCore("Temporal", "PostgreSQL")
	links := func(perSec float64, life time.Duration) float64 {
		now := time.Now()
		return perSec * workflows.NextRefresh(schedule.Schedule{}, now, now, now.Add(life), time.Time{}, "sizing").Sub(now).Seconds()
	}
	perShard := float64(r.runRefreshes) / r.run.Seconds() / devstack.HistoryShards
	busy := 0.0
	for _, v := range r.runCPU {
		busy += v
	}
	busy /= r.run.Seconds() * float64(runtime.NumCPU())
	return fmt.Sprintf("\nDuring the run the machine's CPU was %.0f %% busy, and its %d history shards carried %.1f refreshes/s each. ",
		100*busy, devstack.HistoryShards, perShard) +
		fmt.Sprintf("At this cost one CPU core sustains %.0f refreshes/s of worker (%.0f links with 5-minute tokens, %.0f with 1-hour tokens) "+
			"and %.0f refreshes/s of Temporal server with its PostgreSQL (%.0f links with 5-minute tokens, %.0f with 1-hour tokens).\n",
			w, links(w, 5*time.Minute), links(w, time.Hour), tp, links(tp, 5*time.Minute), links(tp, time.Hour))
}

// goals are the targets for this machine, met or not.
func (r *report) goals() string {
	yes := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	return fmt.Sprintf("\nGoals: enrollment ≥ 100 links/s: %s; refresh lag p99 ≤ 2 s: %s; no expired token served: %s; no token read failed: %s; provider and links agree: %s.\n",
		yes(r.enrollRate >= 100), yes(r.lagP99 <= 2*time.Second), yes(r.expired == 0), yes(r.failed == 0), yes(r.providerRefreshes == r.linkRefreshes))
}

// write logs the tables and, for the long run, writes them to the results
// file of this configuration.
func (r *report) write(t *testing.T) {
	doc := r.table()
	if r.long {
		doc += r.goals()
	}
	t.Log("\n" + doc)
	if r.out == "" {
		return
	}
	name := fmt.Sprintf("scale-%d-links-%d-workers.md", r.links, r.workers)
	title := fmt.Sprintf("Scale: %d links, %d worker(s)", r.links, r.workers)
	cmd := fmt.Sprintf("make scale LINKS=%d WORKERS=%d TOKEN_LIFETIME=%s DURATION=%s READS=%d", r.links, r.workers, r.life, r.run, r.readsPerSec)
	if r.enrollWithin > 0 {
		cmd += fmt.Sprintf(" ENROLL_WITHIN=%s", r.enrollWithin)
	}
	full := results.ThisMachine().Header(title, cmd) + doc
	if err := os.WriteFile(filepath.Join(r.out, name), []byte(full), 0o644); err != nil {
		t.Error(err)
	}
}
