package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkpb "go.temporal.io/api/sdk/v1"

	"github.com/tokenwarden/tokenwarden/providers"
)

// TestUIShowsCurrentDetails: the Temporal UI's metadata query answers
// where the link stands and what happens next, without a custom query.
func TestUIShowsCurrentDetails(t *testing.T) {
	s := newSuite(t, 5*time.Minute)
	var details string
	s.at(2*time.Minute, func() {
		v, err := s.env.QueryWorkflow("__temporal_workflow_metadata")
		require.NoError(t, err)
		var md sdkpb.WorkflowMetadata
		require.NoError(t, v.Get(&md))
		details = md.GetCurrentDetails()
	})
	s.revokeAt(3 * time.Minute)
	s.env.ExecuteWorkflow(Link, params(providers.GrantClientCredentials))
	require.NoError(t, s.env.GetWorkflowError())
	require.Contains(t, details, "**active** link `lnk_1` of tenant `acme` at **peer**")
	require.Contains(t, details, "next: refresh at ")
	require.Contains(t, details, "token expires ")
}
