package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/interceptor"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/tokenwarden/tokenwarden/activities"
	"github.com/tokenwarden/tokenwarden/internal/health"
	"github.com/tokenwarden/tokenwarden/workflows"
)

// opsConfig holds the operational settings of the worker and the
// gateway: the log format, the worker's ops port, and the one escape from
// the start-up validation (validate.go).
type opsConfig struct {
	// LogFormat is text (logfmt-like, the default) or json.
	LogFormat string
	// OpsListen is the worker's address for /healthz, /readyz and
	// /metrics; empty turns the port off. opsListenChosen: it was set by
	// a flag or the environment rather than being the default.
	OpsListen       string
	opsListenChosen bool
	// DatabaseAllowPlaintext accepts a database URL without TLS to a
	// host other than loopback (a private network the operator vouches
	// for, such as compose's).
	DatabaseAllowPlaintext bool
}

// defaultOpsListen is loopback: the ops port answers without a key, so
// it is opened wider only on purpose (the Helm chart sets :9090 and
// limits who reaches it with a NetworkPolicy).
const defaultOpsListen = "127.0.0.1:9090"

// registerOps adds the operational flags the worker and the gateway share.
func (c *config) registerOps(fs *flag.FlagSet) {
	fs.StringVar(&c.LogFormat, "log-format", env("TOKENWARDEN_LOG_FORMAT", "text"),
		"log format: text or json, one object per line (TOKENWARDEN_LOG_FORMAT)")
	fs.BoolVar(&c.DatabaseAllowPlaintext, "database-allow-plaintext", c.envBool("TOKENWARDEN_DATABASE_ALLOW_PLAINTEXT", false),
		"accept a -database-url without TLS (sslmode other than require, verify-ca or verify-full) to a host other than loopback, "+
			"on a network you trust (TOKENWARDEN_DATABASE_ALLOW_PLAINTEXT)")
}

// registerWorkerOps adds the worker's ops port.
func (c *config) registerWorkerOps(fs *flag.FlagSet) {
	v, set := os.LookupEnv("TOKENWARDEN_WORKER_OPS_LISTEN")
	if !set {
		v = defaultOpsListen
	}
	c.OpsListen, c.opsListenChosen = v, set
	fs.Func("ops-listen", "serve /healthz, /readyz and /metrics on this address; empty turns it off (TOKENWARDEN_WORKER_OPS_LISTEN; default "+defaultOpsListen+")",
		func(s string) error {
			c.OpsListen, c.opsListenChosen = s, true
			return nil
		})
}

// logger is the process's logger in the chosen format.
func (c *config) logger(w io.Writer) *slog.Logger {
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return newLogger(w)
}

// waitOutput is where the start-up wait for dependencies writes its
// "waiting: ..." lines: stderr as they are, or, with JSON logs, the log,
// so that every line of the process is one JSON object.
func (c *config) waitOutput(logger *slog.Logger, stderr io.Writer) io.Writer {
	if c.LogFormat == "json" {
		return logLines{logger}
	}
	return stderr
}

// logLines logs each line written to it as a warning.
type logLines struct{ log *slog.Logger }

func (l logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimSpace(string(p)), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			l.log.Warn(strings.TrimPrefix(line, "waiting: "), "waiting", true)
		}
	}
	return len(p), nil
}

// pollFreshness is how recent the worker's last successful poll of its
// task queue must be for /readyz. A long poll that finds no task returns
// empty after about a minute, and a poller asks again at once.
const pollFreshness = 2 * time.Minute

// pollHeld is how long a poll must have been held by the server (neither
// answered nor failed) to show that Temporal accepted it: a refused one
// (namespace unknown, credentials rejected) fails at once.
const pollHeld = 2 * time.Second

// pollWatch follows the worker's task-queue polls from the gRPC client:
// the last one that succeeded, the ones in flight, and the last error.
type pollWatch struct {
	mu       sync.Mutex
	lastOK   time.Time
	lastErr  string
	inflight map[uint64]time.Time
	next     uint64
	now      func() time.Time
}

func newPollWatch() *pollWatch {
	return &pollWatch{inflight: map[uint64]time.Time{}, now: time.Now}
}

// isPoll: a worker's long poll of a task queue.
func isPoll(method string) bool {
	m := method[strings.LastIndex(method, "/")+1:]
	return strings.HasPrefix(m, "Poll") && strings.HasSuffix(m, "TaskQueue")
}

// intercept is a gRPC client interceptor for the Temporal connection.
func (p *pollWatch) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !isPoll(method) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	p.mu.Lock()
	id := p.next
	p.next++
	p.inflight[id] = p.now()
	p.mu.Unlock()
	err := invoker(ctx, method, req, reply, cc, opts...)
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.inflight, id)
	switch {
	case err == nil:
		p.lastOK = p.now()
	case ctx.Err() == nil:
		p.lastErr = status.Convert(err).Message()
	}
	return err
}

// polling reports whether the worker polls its task queue: a poll
// succeeded within pollFreshness, or one is being held by the server.
// Otherwise it says why not.
func (p *pollWatch) polling() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if !p.lastOK.IsZero() && now.Sub(p.lastOK) <= pollFreshness {
		return nil
	}
	for _, started := range p.inflight {
		if now.Sub(started) >= pollHeld {
			return nil
		}
	}
	msg := fmt.Sprintf("no successful poll of task queue %s", workflows.TaskQueue)
	if !p.lastOK.IsZero() {
		msg += fmt.Sprintf(" for %s", now.Sub(p.lastOK).Round(time.Second))
	}
	if p.lastErr != "" {
		msg += "; last error: " + p.lastErr
	}
	return errors.New(msg)
}

// Worker states /readyz reports.
const (
	workerStarting = "starting"
	workerRunning  = "running"
	workerStopping = "stopping"
)

// workerOps is the worker's ops port and what it reports: the process is
// alive (/healthz), the worker polls and reaches its dependencies
// (/readyz), and its metrics (/metrics: the Temporal SDK's temporal_*
// and the engine's tokenwarden_*). A nil *workerOps does nothing.
type workerOps struct {
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *activities.Metrics
	polls   *pollWatch
	srv     *http.Server
	addr    string

	mu          sync.Mutex
	state       string
	checks      []health.Check
	lastFailing string
}

// startWorkerOps wires the worker's metrics and poll watch into cfg (its
// Temporal client picks them up) and opens the ops port, before the
// worker connects: /healthz answers while it waits for its dependencies.
// The default address already taken (a second worker on the host) is
// logged and skipped; an address chosen must be free.
func startWorkerOps(cfg *config, logger *slog.Logger) (*workerOps, error) {
	o := &workerOps{log: logger, reg: prometheus.NewRegistry(), polls: newPollWatch(), state: workerStarting}
	o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.metrics = activities.NewMetrics(o.reg)
	cfg.temporalMetrics = newSDKMetrics(o.reg).handler()
	cfg.temporalDialOptions = append(cfg.temporalDialOptions, grpc.WithChainUnaryInterceptor(o.polls.intercept))
	if cfg.OpsListen == "" {
		return o, nil
	}
	ln, err := net.Listen("tcp", cfg.OpsListen)
	if err != nil {
		if cfg.opsListenChosen {
			return nil, fmt.Errorf("worker: ops port: listen on %s: %w (set -ops-listen, TOKENWARDEN_WORKER_OPS_LISTEN, to a free address, or empty to turn it off)", cfg.OpsListen, err)
		}
		logger.Warn("worker: the default ops address is taken (another worker on this host?); running without /healthz, /readyz and /metrics: set -ops-listen",
			"address", cfg.OpsListen, "error", err.Error())
		return o, nil
	}
	o.addr = ln.Addr().String()
	o.srv = &http.Server{Handler: o.handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		if err := o.srv.Serve(limitListener(ln, 64)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("worker: ops port stopped", "error", err.Error())
		}
	}()
	logger.Info("worker ops listening", "address", o.addr, "paths", "/healthz /readyz /metrics")
	return o, nil
}

// connected adds the dependency checks of /readyz: the start-up checks
// (Temporal answers, Vault unsealed, PostgreSQL answers) and whether
// Vault still takes the worker's token.
func (o *workerOps) connected(d *deps, cfg *config) {
	if o == nil {
		return
	}
	checks := slices.Clone(d.checks)
	if d.vault != nil {
		checks = append(checks, vaultTokenCheck(d.vault, cfg.VaultMount, cfg.VaultPrefix))
	}
	o.mu.Lock()
	o.checks = checks
	o.mu.Unlock()
}

func (o *workerOps) setState(s string) {
	if o == nil {
		return
	}
	o.mu.Lock()
	o.state = s
	o.mu.Unlock()
}

// activityMetrics are the engine's metrics for the activities (nil
// without ops).
func (o *workerOps) activityMetrics() *activities.Metrics {
	if o == nil {
		return nil
	}
	return o.metrics
}

// interceptors measure every activity.
func (o *workerOps) interceptors() []interceptor.WorkerInterceptor {
	if o == nil {
		return nil
	}
	return []interceptor.WorkerInterceptor{o.metrics.WorkerInterceptor()}
}

// close stops the ops port, after the worker has stopped.
func (o *workerOps) close() {
	if o == nil || o.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = o.srv.Shutdown(ctx)
}

func (o *workerOps) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeOpsJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", o.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{Registry: o.reg}))
	return mux
}

// opsReadyTimeout bounds each dependency probe of /readyz.
const opsReadyTimeout = 3 * time.Second

// readyz answers without a key, so it names the failing parts only
// ("worker", "temporal", "vault", "postgres"); what failed and why is in
// the log, written when it changes.
//
// PostgreSQL is reported as degraded, never failing: refreshes go on
// without it (the audit trail catches up), so a database outage must not
// make every worker unready and stall a rolling deploy or an eviction.
func (o *workerOps) readyz(w http.ResponseWriter, r *http.Request) {
	failing, details := o.readiness(r.Context())
	o.logReadiness(details)
	degraded := []string{}
	failing = slices.DeleteFunc(failing, func(name string) bool {
		if name == "postgres" {
			degraded = append(degraded, name)
			return true
		}
		return false
	})
	if len(failing) > 0 {
		w.Header().Set("Retry-After", "5")
		writeOpsJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "failing": failing, "degraded": degraded})
		return
	}
	status := "ok"
	if len(degraded) > 0 {
		status = "degraded"
	}
	writeOpsJSON(w, http.StatusOK, map[string]any{"status": status, "failing": failing, "degraded": degraded})
}

// readiness lists the failing parts, and for the log what went wrong.
func (o *workerOps) readiness(ctx context.Context) (failing, details []string) {
	o.mu.Lock()
	state, checks := o.state, o.checks
	o.mu.Unlock()
	failing = []string{}
	fail := func(name, detail string) {
		if !slices.Contains(failing, name) {
			failing = append(failing, name)
		}
		details = append(details, name+": "+detail)
	}
	switch {
	case state != workerRunning:
		fail("worker", "the worker is "+state)
	default:
		if err := o.polls.polling(); err != nil {
			fail("worker", err.Error())
		}
	}
	for _, res := range health.Run(ctx, opsReadyTimeout, checks...) {
		if !res.OK {
			fail(res.Name, res.Error)
		}
	}
	return failing, details
}

// logReadiness logs the readiness problems when they change.
func (o *workerOps) logReadiness(details []string) {
	now := strings.Join(details, "; ")
	o.mu.Lock()
	changed := now != o.lastFailing
	o.lastFailing = now
	o.mu.Unlock()
	switch {
	case !changed:
	case now == "":
		o.log.Info("worker ready")
	default:
		o.log.Warn("worker not ready", "failing", now)
	}
}

func writeOpsJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// vaultTokenCheck fails when Vault refuses the worker's token (expired,
// revoked): a read below the worker's own tree, which its policy grants,
// of a path that does not exist, so that it costs Vault a lookup and
// reads no secret.
func vaultTokenCheck(c *vault.Client, mount, prefix string) health.Check {
	path := mount + "/data/" + prefix + "/readiness-probe"
	return health.Check{Name: "vault", Probe: func(ctx context.Context) error {
		_, err := c.Logical().ReadWithContext(ctx, path)
		var re *vault.ResponseError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re) && (re.StatusCode == http.StatusForbidden || re.StatusCode == http.StatusUnauthorized):
			return fmt.Errorf("the worker's token is refused by Vault at %s (expired or revoked; a login method logs in again on an activity's next refusal)", c.Address())
		}
		return fmt.Errorf("reading below the worker's prefix at Vault %s failed: %w", c.Address(), err)
	}}
}
