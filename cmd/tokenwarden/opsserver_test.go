package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenwarden/tokenwarden/internal/health"
)

const pollMethod = "/temporal.api.workflowservice.v1.WorkflowService/PollActivityTaskQueue"

func TestPollWatch(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := newPollWatch()
	p.now = func() time.Time { return now }
	call := func(method string, err error) {
		_ = p.intercept(context.Background(), method, nil, nil, nil,
			func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return err })
	}
	if err := p.polling(); err == nil {
		t.Fatal("polling before any poll")
	}
	call(pollMethod, status.Error(codes.NotFound, "namespace tokenwarden is not found"))
	err := p.polling()
	if err == nil || !strings.Contains(err.Error(), "namespace tokenwarden is not found") {
		t.Fatalf("after a refused poll: %v", err)
	}
	call("/temporal.api.workflowservice.v1.WorkflowService/GetSystemInfo", nil)
	if p.polling() == nil {
		t.Fatal("another call counted as a poll")
	}
	call(pollMethod, nil)
	if err := p.polling(); err != nil {
		t.Fatalf("after a poll: %v", err)
	}
	now = now.Add(pollFreshness + time.Second)
	if err := p.polling(); err == nil || !strings.Contains(err.Error(), "for 2m1s") {
		t.Fatalf("a poll long ago: %v", err)
	}

	// A poll the server holds (no task yet) shows it accepted the worker.
	release := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.intercept(context.Background(), pollMethod, nil, nil, nil,
			func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				<-release
				return nil
			})
	}()
	waitUntil(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.inflight) == 1 })
	now = now.Add(pollHeld)
	if err := p.polling(); err != nil {
		t.Errorf("a poll held %s: %v", pollHeld, err)
	}
	close(release)
	<-done
	if !isPoll("/temporal.api.workflowservice.v1.WorkflowService/PollWorkflowTaskQueue") || isPoll("/x/PollWorkflowExecutionUpdate") {
		t.Error("isPoll")
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWorkerOpsReadiness: /healthz answers from the start; /readyz names
// what fails (the worker's state and polls, each dependency) and nothing
// else, and the log says why, once per change.
func TestWorkerOpsReadiness(t *testing.T) {
	var logs syncBuffer
	o := &workerOps{log: slog.New(slog.NewTextHandler(&logs, nil)), reg: prometheus.NewRegistry(), polls: newPollWatch(), state: workerStarting}
	srv := httptest.NewServer(o.handler())
	defer srv.Close()
	get := func(path string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	failing := func(body map[string]any) string {
		b, _ := json.Marshal(body["failing"])
		return string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz while starting: %d", code)
	}
	if code, body := get("/readyz"); code != 503 || failing(body) != `["worker"]` {
		t.Fatalf("/readyz while starting: %d %v", code, body)
	}

	vaultDown := errors.New("Vault at http://10.0.0.9:8200 is sealed")
	o.checks = []health.Check{
		{Name: "temporal", Probe: func(context.Context) error { return nil }},
		{Name: "vault", Probe: func(context.Context) error { return vaultDown }},
		{Name: "postgres", Probe: func(context.Context) error { return nil }},
	}
	o.setState(workerRunning)
	_ = o.polls.intercept(context.Background(), pollMethod, nil, nil, nil,
		func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error { return nil })
	code, body := get("/readyz")
	if code != 503 || failing(body) != `["vault"]` || body["status"] != "unavailable" {
		t.Fatalf("/readyz with Vault sealed: %d %v", code, body)
	}
	if strings.Contains(failing(body), "10.0.0.9") {
		t.Error("/readyz answers without a key: no addresses or error texts")
	}
	get("/readyz")
	if n := strings.Count(logs.String(), "is sealed"); n != 1 {
		t.Errorf("the reason is logged %d times, want once per change:\n%s", n, logs.String())
	}
	vaultDown = nil
	o.checks[1].Probe = func(context.Context) error { return nil }
	if code, body := get("/readyz"); code != 200 || body["status"] != "ok" {
		t.Fatalf("/readyz when all is well: %d %v", code, body)
	}
	// Refreshes go on without PostgreSQL: the worker stays ready.
	o.checks[2].Probe = func(context.Context) error { return errors.New("connection refused") }
	if code, body := get("/readyz"); code != 200 || body["status"] != "degraded" || failing(body) != `[]` {
		t.Fatalf("/readyz with PostgreSQL down: %d %v", code, body)
	}
	o.checks[2].Probe = func(context.Context) error { return nil }
	if !strings.Contains(logs.String(), "worker ready") {
		t.Error("recovery not logged")
	}
	o.setState(workerStopping)
	if code, body := get("/readyz"); code != 503 || failing(body) != `["worker"]` {
		t.Fatalf("/readyz while stopping: %d %v", code, body)
	}
	if code, _ := get("/metrics"); code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	if code, _ := get("/readyz?x=1"); code != 503 {
		t.Fatal("query strings change nothing")
	}
	resp, err := http.Post(srv.URL+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d", resp.StatusCode)
	}
}

func TestNilWorkerOps(t *testing.T) {
	var o *workerOps
	o.setState(workerRunning)
	o.connected(&deps{}, &config{})
	o.close()
	if o.activityMetrics() != nil || o.interceptors() != nil {
		t.Error("a nil workerOps measures nothing")
	}
}

func TestSDKMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := newSDKMetrics(reg).handler()
	poll := h.WithTags(map[string]string{"namespace": "tw", "operation": "PollActivityTaskQueue"})
	poll.Counter("temporal_long_request").Inc(2)
	poll.Counter("temporal_long_request").Inc(1)
	poll.Timer("temporal_long_request_latency").Record(1500 * time.Millisecond)
	h.WithTags(map[string]string{"task_queue": "tokenwarden-links", "worker-type": "ActivityWorker"}).Gauge("temporal_worker_task_slots_available").Update(99)
	// Other tag keys for a family already made: folded in, never a
	// failed scrape.
	h.WithTags(map[string]string{"namespace": "tw", "status_code": "Unavailable"}).Counter("temporal_long_request").Inc(1)
	// A name that clashes with a metric of the engine is dropped.
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "temporal_clash_total", Help: "x"}))
	h.Counter("temporal_clash").Inc(1)

	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP temporal_long_request_total Temporal SDK counter temporal_long_request.
# TYPE temporal_long_request_total counter
temporal_long_request_total{namespace="tw",operation=""} 1
temporal_long_request_total{namespace="tw",operation="PollActivityTaskQueue"} 3
# HELP temporal_worker_task_slots_available Temporal SDK gauge temporal_worker_task_slots_available.
# TYPE temporal_worker_task_slots_available gauge
temporal_worker_task_slots_available{task_queue="tokenwarden-links",worker_type="ActivityWorker"} 99
`), "temporal_long_request_total", "temporal_worker_task_slots_available"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "temporal_long_request_latency_seconds"); err != nil || n != 1 {
		t.Errorf("timer as a histogram in seconds: %d series (%v)", n, err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("a scrape fails: %v", err)
	}
}

func TestJSONLogs(t *testing.T) {
	var buf bytes.Buffer
	c := &config{opsConfig: opsConfig{LogFormat: "json"}}
	log := c.logger(&buf)
	log.Info("worker started", "task_queue", "tokenwarden-links")
	// The start-up wait's lines become log records too.
	_, _ = io.WriteString(c.waitOutput(log, io.Discard), "waiting: Vault at http://127.0.0.1:8200 is sealed\n")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if rec["msg"] == "" || rec["level"] == "" || rec["time"] == "" {
			t.Errorf("record without msg, level or time: %s", l)
		}
	}
	if !strings.Contains(lines[1], `"msg":"Vault at http://127.0.0.1:8200 is sealed"`) {
		t.Errorf("wait line: %s", lines[1])
	}
	var text bytes.Buffer
	tc := &config{opsConfig: opsConfig{LogFormat: "text"}}
	tc.logger(&text).Info("hello")
	if !strings.Contains(text.String(), "msg=hello") || tc.waitOutput(nil, &text) != &text {
		t.Errorf("text logs: %s", text.String())
	}
}
