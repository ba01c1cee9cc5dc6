package activities_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tokenwarden/tokenwarden/activities"
)

// TestWebhookDeliveriesAreCounted: each attempt counts by how the
// receiver answered (a retried 500, a 410 that stops, a 2xx).
func TestWebhookDeliveriesAreCounted(t *testing.T) {
	e := newHookEnv(t)
	reg := prometheus.NewPedanticRegistry()
	e.a.Metrics = activities.NewMetrics(reg)
	r := newReceiver(t, 500, http.StatusGone)
	e.configure(t, r.srv.URL, "whsec_test-metrics")
	require.NoError(t, e.deliver(t, event()))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tokenwarden_webhook_deliveries_total Webhook delivery attempts by outcome (delivered, http_error, transport_error, gone, refused_internal).
# TYPE tokenwarden_webhook_deliveries_total counter
tokenwarden_webhook_deliveries_total{outcome="gone"} 1
tokenwarden_webhook_deliveries_total{outcome="http_error"} 1
`), "tokenwarden_webhook_deliveries_total"))

	ok := newReceiver(t)
	e.configure(t, ok.srv.URL, "whsec_test-metrics")
	require.NoError(t, e.deliver(t, event()))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP tokenwarden_webhook_deliveries_total Webhook delivery attempts by outcome (delivered, http_error, transport_error, gone, refused_internal).
# TYPE tokenwarden_webhook_deliveries_total counter
tokenwarden_webhook_deliveries_total{outcome="delivered"} 1
tokenwarden_webhook_deliveries_total{outcome="gone"} 1
tokenwarden_webhook_deliveries_total{outcome="http_error"} 1
`), "tokenwarden_webhook_deliveries_total"))
}
