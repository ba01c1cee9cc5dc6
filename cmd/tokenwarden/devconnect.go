package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	tokenwarden "github.com/tokenwarden/tokenwarden"
)

// devConnectUser is the user_id of the connect session `make dev` prints.
const devConnectUser = "demo-connect"

// printConnectURL makes a connect session for the dev stack's tenant once
// the gateway answers, and prints its URL: the hosted connect page, to
// try in a browser. It offers every provider of the dev catalog the page
// can connect.
func printConnectURL(ctx context.Context, w io.Writer, gatewayURL, apiKey string, logger *slog.Logger) {
	c := tokenwarden.NewClient(gatewayURL, apiKey)
	for ctx.Err() == nil {
		cs, err := c.CreateConnectSession(ctx, tokenwarden.ConnectSessionRequest{UserID: devConnectUser, ExpiresIn: time.Hour})
		if err == nil {
			fmt.Fprintf(w, "\nConnect page  %s\n  (tenant \"default\", user %s; works once, until %s; POST /v1/connect/sessions makes another)\n",
				cs.ConnectURL, devConnectUser, cs.ExpiresAt.Local().Format("15:04"))
			return
		}
		var apiErr *tokenwarden.APIError
		if errors.As(err, &apiErr) && !apiErr.Temporary() {
			logger.Warn("connect page: no session", "error", err)
			return
		}
		// The gateway may still be starting.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
