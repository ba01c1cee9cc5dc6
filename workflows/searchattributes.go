package workflows

import "go.temporal.io/sdk/temporal"

// SearchAttribute names a custom search attribute and its Temporal type, in
// the spelling the CLI's --search-attribute flag and the operator service
// accept (Keyword, Datetime, ...).
type SearchAttribute struct {
	Name string
	Type string
}

// SearchAttributes is the one list of the engine's custom search attributes.
// The dev stack registers them at server start and the test harness in every
// fresh namespace, so a workflow can upsert any of them anywhere it runs.
var SearchAttributes = []SearchAttribute{
	{Name: "TokenwardenTenant", Type: "Keyword"},
	{Name: "TokenwardenProvider", Type: "Keyword"},
	{Name: "TokenwardenStatus", Type: "Keyword"},
	{Name: "TokenwardenLinkID", Type: "Keyword"},
	{Name: "TokenwardenNextRefresh", Type: "Datetime"},
	{Name: "TokenwardenExpiresAt", Type: "Datetime"},
}

// Typed keys for upserting and querying the attributes above; their names
// must stay in step with SearchAttributes.
var (
	TenantKey      = temporal.NewSearchAttributeKeyKeyword("TokenwardenTenant")
	ProviderKey    = temporal.NewSearchAttributeKeyKeyword("TokenwardenProvider")
	StatusKey      = temporal.NewSearchAttributeKeyKeyword("TokenwardenStatus")
	LinkIDKey      = temporal.NewSearchAttributeKeyKeyword("TokenwardenLinkID")
	NextRefreshKey = temporal.NewSearchAttributeKeyTime("TokenwardenNextRefresh")
	ExpiresAtKey   = temporal.NewSearchAttributeKeyTime("TokenwardenExpiresAt")
)
