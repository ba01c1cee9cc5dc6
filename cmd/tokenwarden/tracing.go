package main

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// tracing is what OpenTelemetry needs from the configuration; the rest
// comes from the standard OTEL_* variables (internal/telemetry).
type tracing struct {
	// traceService names the process in traces unless OTEL_SERVICE_NAME
	// does; set by the command, not by a flag.
	traceService string
}

// traceServiceName is the service name of the process's spans.
func (c *config) traceServiceName() string {
	if c.traceService == "" {
		return "tokenwarden"
	}
	return c.traceService
}

// ginRoutes are the route templates of the gateway's handler, which
// name its server spans in place of the paths as sent (an OAuth state
// travels in a callback's path).
func ginRoutes(h http.Handler) []string {
	e, ok := h.(*gin.Engine)
	if !ok {
		return nil
	}
	var out []string
	for _, r := range e.Routes() {
		out = append(out, r.Path)
	}
	return out
}
