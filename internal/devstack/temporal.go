package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// StartTemporal starts the Temporal dev server with a SQLite file under
// <Dir>/temporal, the namespaces and the search attributes, and waits until
// the namespace answers with every search attribute registered.
func (s *Stack) StartTemporal(ctx context.Context) error {
	s.mu.Lock()
	running := s.temporal != nil
	s.mu.Unlock()
	if running {
		return errors.New("devstack: temporal is already running")
	}
	if err := s.startTemporal(ctx); err != nil {
		return fmt.Errorf("devstack: temporal: %w", err)
	}
	return nil
}

func (s *Stack) startTemporal(ctx context.Context) error {
	if s.opts.TemporalServer {
		return s.startTemporalServer(ctx)
	}
	bin, err := s.binary("temporal")
	if err != nil {
		return err
	}
	root := filepath.Join(s.dir, "temporal")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	o := s.opts
	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1",
		"--port", strconv.Itoa(o.Ports.Temporal),
		"--ui-port", strconv.Itoa(o.Ports.TemporalUI),
		"--db-filename", filepath.Join(root, "temporal.db"),
		"--log-format", "text",
		"--namespace", o.Namespace,
	}
	for _, ns := range o.ExtraNamespaces {
		args = append(args, "--namespace", ns)
	}
	for _, sa := range o.SearchAttributes {
		args = append(args, "--search-attribute", sa.Name+"="+sa.Type)
	}
	if o.UICodecEndpoint != "" {
		args = append(args, "--ui-codec-endpoint", o.UICodecEndpoint)
	}

	fmt.Fprintf(s.log, "temporal: starting on %s, UI %s (log: %s)\n", hostPort(o.Ports.Temporal), s.Info().TemporalUIURL, filepath.Join(s.dir, "logs", "temporal.log"))
	p, err := s.spawn(spawnSpec{
		name: "temporal",
		path: bin,
		args: args,
		// HOME is kept: the CLI reads its (absent) config files from there.
		env: childEnv(),
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.temporal = p
	s.mu.Unlock()

	namespaces := append([]string{o.Namespace}, o.ExtraNamespaces...)
	err = p.waitReady(ctx, 90*time.Second, func(ctx context.Context) error {
		c, err := DialTemporal(ctx, s.Info().TemporalAddress, o.Namespace)
		if err != nil {
			return err
		}
		defer c.Close()
		for _, ns := range namespaces {
			if err := EnsureSearchAttributes(ctx, c, ns, o.SearchAttributes); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = s.StopTemporal()
		return err
	}
	fmt.Fprintf(s.log, "temporal: ready (%s, namespace %s, UI %s)\n", s.Info().TemporalAddress, o.Namespace, s.Info().TemporalUIURL)
	return nil
}

// DialTemporal connects a client that logs nothing (the SDK's default
// logger writes to stdout) and fails fast when the server does not answer.
func DialTemporal(ctx context.Context, address, namespace string) (client.Client, error) {
	return client.DialContext(ctx, client.Options{
		HostPort:  address,
		Namespace: namespace,
		Logger:    sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
}

// EnsureSearchAttributes checks that namespace has every attribute of sas
// with the right type, registering the missing ones.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string, sas []SearchAttribute) error {
	op := c.OperatorService()
	resp, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of %s: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for _, sa := range sas {
		want, err := IndexedValueType(sa.Type)
		if err != nil {
			return err
		}
		got, ok := resp.GetCustomAttributes()[sa.Name]
		switch {
		case !ok:
			missing[sa.Name] = want
		case got != want:
			return fmt.Errorf("search attribute %s of namespace %s has type %s, want %s", sa.Name, namespace, got, want)
		}
	}
	if len(missing) == 0 {
		return usable(ctx, c, namespace, sas)
	}
	if _, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("add search attributes to %s: %w", namespace, err)
	}
	return fmt.Errorf("search attributes of %s just added, checking again", namespace)
}

// usable checks that the frontend accepts a query on every attribute: the
// server caches a namespace's search attributes and refreshes them every
// few seconds, so one just added is listed before workflows may use it
// (the stack does not force a refresh on every read, which costs the real
// server a database read per workflow start and per upsert).
func usable(ctx context.Context, c client.Client, namespace string, sas []SearchAttribute) error {
	for _, sa := range sas {
		if _, err := c.WorkflowService().CountWorkflowExecutions(ctx, &workflowservice.CountWorkflowExecutionsRequest{
			Namespace: namespace, Query: sa.Name + " IS NULL"}); err != nil {
			return fmt.Errorf("search attribute %s of %s is not usable yet: %w", sa.Name, namespace, err)
		}
	}
	return nil
}

// IndexedValueType maps a type name as the CLI spells it (Keyword,
// Datetime, ...) to the API enum.
func IndexedValueType(name string) (enumspb.IndexedValueType, error) {
	t, err := enumspb.IndexedValueTypeFromString(name)
	if err != nil || t == enumspb.INDEXED_VALUE_TYPE_UNSPECIFIED {
		return 0, fmt.Errorf("unknown search attribute type %q", name)
	}
	return t, nil
}

// StopTemporal stops the dev server gracefully (SIGTERM).
func (s *Stack) StopTemporal() error {
	s.mu.Lock()
	p := s.temporal
	s.temporal = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	fmt.Fprintln(s.log, "temporal: stopping")
	if err := p.stop(syscall.SIGTERM, true, 30*time.Second); err != nil {
		return fmt.Errorf("devstack: temporal: %w", err)
	}
	_ = os.Remove(filepath.Join(s.dir, "run", "temporal.pid"))
	return nil
}
