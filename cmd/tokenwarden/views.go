package main

import (
	"fmt"
	"io"
	"net/url"
	"time"
)

// savedView is a filtered list of links in the Temporal UI. The UI keeps
// saved views in the operator's browser (local storage), so no server can
// create them: `tokenwarden dev` prints them as links, and the README lists
// the queries to save.
type savedView struct {
	Name, Query string
}

// savedViews are the lists an operator opens first. "Overdue" compares with
// a fixed time (visibility queries have no now()): the one printed is
// a minute before the moment it was printed.
func savedViews(now time.Time, provider string) []savedView {
	running := "WorkflowType = 'Link' AND ExecutionStatus = 'Running'"
	return []savedView{
		{"needs re-authorization", running + " AND TokenwardenStatus = 'reauth_required'"},
		{"degraded", running + " AND TokenwardenStatus = 'degraded'"},
		{"one provider", running + " AND TokenwardenProvider = '" + provider + "'"},
		{"next refresh overdue", running + " AND TokenwardenStatus IN ('active', 'degraded') AND TokenwardenNextRefresh < '" +
			now.Add(-time.Minute).UTC().Format(time.RFC3339) + "'"},
	}
}

// viewURL opens a saved view's list in the Temporal UI.
func viewURL(uiURL, namespace string, v savedView) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows?query=%s", uiURL, url.PathEscape(namespace), url.QueryEscape(v.Query))
}

func printViews(w io.Writer, uiURL, namespace string, now time.Time) {
	fmt.Fprintln(w, "Temporal UI views (save them in the UI: it keeps saved views in the browser):")
	for _, v := range savedViews(now, "finapi") {
		fmt.Fprintf(w, "  %-24s %s\n", v.Name, viewURL(uiURL, namespace, v))
	}
}
