package main

import (
	"testing"

	"github.com/tokenwarden/tokenwarden/providers"
	"github.com/tokenwarden/tokenwarden/providers/builtin"
)

// TestDevCatalogLoads: the catalog `tokenwarden dev` writes loads, and
// every provider in it has an API for the proxy on its simulator.
func TestDevCatalogLoads(t *testing.T) {
	t.Chdir("../..")
	ports := newDevPorts(19400)
	path, err := writeDevCatalog(t.TempDir(), ports)
	if err != nil {
		t.Fatal(err)
	}
	c, err := providers.LoadFile(path, builtin.Kinds)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Entries() {
		if e.API.BaseURL == "" || !e.API.AllowInternal {
			t.Errorf("%s: api %+v, want a base URL on 127.0.0.1 with api_allow_internal", e.Name, e.API)
		}
	}
}
