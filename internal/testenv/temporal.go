package testenv

import (
	"context"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tokenwarden/tokenwarden/internal/devstack"
)

// Temporal registers a fresh namespace for this test, with the engine's
// search attributes, and returns a client bound to it (closed on cleanup)
// and its name. The namespace is left behind: the dev server's stack is
// thrown away after the run, and deleting namespaces costs more than it
// saves.
func Temporal(t testing.TB) (client.Client, string) {
	t.Helper()
	info := StackInfo(t)
	ctx, cancel := testContext(t, 2*time.Minute)
	defer cancel()
	setup, cancelSetup := context.WithTimeout(ctx, time.Minute)
	defer cancelSetup()

	admin, err := devstack.DialTemporal(setup, info.TemporalAddress, info.TemporalNamespace)
	if err != nil {
		t.Fatalf("testenv: connect to Temporal at %s: %v", info.TemporalAddress, err)
	}
	defer admin.Close()
	ns := "test-" + Name(t, 60)
	if _, err := admin.WorkflowService().RegisterNamespace(setup, &workflowservice.RegisterNamespaceRequest{
		Namespace:                        ns,
		Description:                      "tokenwarden test " + t.Name(),
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour),
	}); err != nil {
		t.Fatalf("testenv: register namespace %s: %v", ns, err)
	}
	// The frontend learns of a new namespace through its cache: retry until
	// the namespace has every search attribute (EnsureSearchAttributes adds
	// the missing ones and asks to be called again).
	if err := poll(setup, "namespace "+ns+" not usable", func(ctx context.Context) error {
		return devstack.EnsureSearchAttributes(ctx, admin, ns, SearchAttributes)
	}); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	c, err := devstack.DialTemporal(setup, info.TemporalAddress, ns)
	if err != nil {
		t.Fatalf("testenv: connect to Temporal namespace %s: %v", ns, err)
	}
	t.Cleanup(c.Close)
	return c, ns
}
