package tokenwarden

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Event is one entry of a link's audit trail: a transition the link's
// workflow recorded.
type Event struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	FromStatus string         `json:"from_status,omitempty"`
	ToStatus   string         `json:"to_status,omitempty"`
	Detail     map[string]any `json:"detail,omitempty"`
	OccurredAt time.Time      `json:"occurred_at"`
}

// EventPage is one page of Events. NextCursor is empty on the last page.
type EventPage struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// Events returns one page of link id's audit trail, oldest first. cursor
// is the NextCursor of the previous page ("" for the first); limit <= 0
// lets the gateway choose the page size.
func (c *Client) Events(ctx context.Context, id, cursor string, limit int) (*EventPage, error) {
	p, err := linkPath(id, "events")
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var page EventPage
	if err := c.call(ctx, http.MethodGet, p, nil, &page); err != nil {
		return nil, err
	}
	return &page, nil
}
