#!/bin/sh
# One-shot (service temporal-setup): the namespace the engine runs in and
# its custom search attributes, as workflows/searchattributes.go lists them
# (TestComposeSearchAttributes keeps this file in step). Idempotent.
set -eu
ns=tokenwarden
until temporal operator cluster health >/dev/null 2>&1; do
  echo "waiting for Temporal at $TEMPORAL_ADDRESS"
  sleep 2
done
temporal operator namespace describe --namespace "$ns" >/dev/null 2>&1 ||
  temporal operator namespace create --namespace "$ns" --retention 168h
attr() {
  if temporal operator search-attribute list --namespace "$ns" | grep -qw "$1"; then
    echo "search attribute $1 exists"
  else
    temporal operator search-attribute create --namespace "$ns" --name "$1" --type "$2"
  fi
}
attr TokenwardenTenant Keyword
attr TokenwardenProvider Keyword
attr TokenwardenStatus Keyword
attr TokenwardenLinkID Keyword
attr TokenwardenNextRefresh Datetime
attr TokenwardenExpiresAt Datetime
echo "namespace $ns is ready"
