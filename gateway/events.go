package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/tokenwarden/tokenwarden/internal/store"
)

// eventLister is what the audit trail endpoint needs of the store; kept
// apart from linkStore so that the input-handling tests' fake need not
// grow.
type eventLister interface {
	ListEvents(ctx context.Context, tenantID, linkID, cursor string, limit int) ([]store.Event, string, error)
}

// eventView is one audit-trail entry as the API shows it. Detail never
// holds a secret: the workflow records wire facts only.
type eventView struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	FromStatus string         `json:"from_status,omitempty"`
	ToStatus   string         `json:"to_status,omitempty"`
	Detail     map[string]any `json:"detail"`
	OccurredAt time.Time      `json:"occurred_at"`
}

// listEvents serves a link's audit trail, oldest first, a page at a time.
// A link of another tenant is as absent as one that never existed.
func (s *Server) listEvents(c *gin.Context) {
	id, ok := s.linkID(c)
	if !ok {
		return
	}
	cursor := c.Query("cursor")
	if len(cursor) > 1000 {
		s.fail(c, errBadRequest("cursor is not one this API returned"))
		return
	}
	limit := 0
	if raw, ok := c.GetQuery("limit"); ok {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > store.MaxListLimit {
			s.fail(c, errBadRequest(fmt.Sprintf(`"limit" must be an integer from 1 to %d`, store.MaxListLimit)))
			return
		}
		limit = n
	}
	el, ok := s.store.(eventLister)
	if !ok {
		s.fail(c, errors.New("the store cannot list events"))
		return
	}
	events, next, err := el.ListEvents(c.Request.Context(), tenantOf(c), id, cursor, limit)
	if err != nil {
		s.fail(c, storeError(err))
		return
	}
	out := make([]eventView, 0, len(events))
	for _, e := range events {
		v := eventView{ID: e.ID, Type: e.Type, FromStatus: e.FromStatus, ToStatus: e.ToStatus, Detail: e.Detail, OccurredAt: e.OccurredAt}
		if msg, ok := v.Detail["message"].(string); ok {
			// The workflow copies last_error here: provider text, cleaned
			// on the way out as last_error is.
			v.Detail = maps.Clone(v.Detail)
			v.Detail["message"] = shownLastError(msg)
		}
		if v.Detail == nil {
			v.Detail = map[string]any{}
		}
		out = append(out, v)
	}
	c.JSON(http.StatusOK, gin.H{"events": out, "next_cursor": next})
}
