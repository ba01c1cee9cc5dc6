package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
)

// printProxyCall shows the proxy at work on the dev stack: once the finAPI
// demo link is active, it calls the simulator's GET /users through
// /v1/links/{id}/proxy (the link's token never leaves the gateway) and
// prints the answer's status with the command to do it again.
func printProxyCall(ctx context.Context, w io.Writer, gatewayURL, apiKey string, logger *slog.Logger) {
	c := tokenwarden.NewClient(gatewayURL, apiKey)
	deadline := time.Now().Add(2 * time.Minute)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		page, err := c.ListLinks(ctx, tokenwarden.ListOptions{UserID: demoUser, Provider: "finapi", Status: "active"})
		if err == nil && len(page.Links) > 0 {
			id := page.Links[0].ID
			status, err := proxiedStatus(ctx, c, id)
			if err != nil {
				logger.Warn("proxy demo", "link", id, "error", err)
				return
			}
			fmt.Fprintf(w, "\nProxy         GET %s/v1/links/%s/proxy/users -> %s from the finAPI simulator\n"+
				"  (the link's token stays in the gateway; again: go run ./cmd/tokenwarden links call %s GET /users)\n",
				gatewayURL, id, status, id)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func proxiedStatus(ctx context.Context, c *tokenwarden.Client, linkID string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "/users", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.ProxyClient(linkID).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	return resp.Status, nil
}
