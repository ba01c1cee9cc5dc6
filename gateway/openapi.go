package gateway

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"
)

// openAPIDocument describes the API. It is written by hand, not generated,
// so that it can say why as well as what; openapi_test.go keeps it in step
// with the routes the server registers.
//
//go:embed openapi.json
var openAPIDocument []byte

// serveOpenAPI answers GET /openapi.json.
func serveOpenAPI(c *gin.Context) {
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "application/json", openAPIDocument)
}

// serveDocs answers GET /docs with a page that renders /openapi.json. The
// gateway runs where there may be no internet, so the page loads nothing
// but the document; its CSP allows exactly its own inline script and style.
func serveDocs(c *gin.Context) {
	c.Header("Content-Security-Policy", docsCSP)
	c.Header("X-Content-Type-Options", "nosniff")
	c.Header("Cache-Control", "no-cache")
	c.Data(http.StatusOK, "text/html; charset=utf-8", docsPage)
}

// openAPIOperation is one (method, path) the document describes, the path
// in OpenAPI's {param} form.
type openAPIOperation struct {
	Method string
	Path   string
}

// openAPIMethods are the keys of a path item that name operations; the
// others (parameters, summary, ...) do not.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// openAPIOperations lists the operations of the embedded document, sorted
// by path then method, as Server.Routes sorts routes.
func openAPIOperations() ([]openAPIOperation, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		return nil, fmt.Errorf("gateway: parse openapi.json: %w", err)
	}
	var ops []openAPIOperation
	for path, item := range doc.Paths {
		for _, m := range openAPIMethods {
			if _, ok := item[m]; ok {
				ops = append(ops, openAPIOperation{Method: strings.ToUpper(m), Path: path})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops, nil
}

// docsScript renders the document with DOM calls only (textContent, never
// innerHTML), so nothing in it can turn into markup.
const docsScript = `
(function () {
  "use strict";
  var METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
  var main = document.getElementById("main");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // prose renders a description: paragraphs, "- " lists and ` + "`code`" + ` spans.
  function prose(text) {
    var box = el("div", "prose");
    String(text || "").split(/\n\n+/).forEach(function (block) {
      var lines = block.split("\n");
      if (lines.every(function (l) { return /^- /.test(l); })) {
        var ul = el("ul");
        lines.forEach(function (l) { ul.appendChild(inline(el("li"), l.slice(2))); });
        box.appendChild(ul);
      } else {
        box.appendChild(inline(el("p"), block));
      }
    });
    return box;
  }
  function inline(parent, text) {
    String(text).split("` + "`" + `").forEach(function (part, i) {
      parent.appendChild(i % 2 ? el("code", "", part) : document.createTextNode(part));
    });
    return parent;
  }
  function refName(ref) { return ref.slice(ref.lastIndexOf("/") + 1); }
  function resolve(doc, obj) {
    if (!obj || !obj.$ref) return obj;
    var node = doc;
    obj.$ref.replace(/^#\//, "").split("/").forEach(function (k) { node = node && node[k]; });
    return node || {};
  }
  function schemaLink(schema) {
    if (!schema) return el("span", "muted", "-");
    if (schema.$ref) {
      var a = el("a", "", refName(schema.$ref));
      a.href = "#schema-" + refName(schema.$ref);
      return a;
    }
    var t = schema.type;
    if (Array.isArray(t)) t = t.join(" | ");
    if (t === "array") {
      var span = el("span", "", "array of ");
      span.appendChild(schemaLink(schema.items));
      return span;
    }
    var s = t || (schema.oneOf ? "one of " + schema.oneOf.length : "any");
    if (schema.enum) s += " (" + schema.enum.join(", ") + ")";
    if (schema.const !== undefined) s += " = " + schema.const;
    if (schema.format) s += " <" + schema.format + ">";
    return el("span", "", s);
  }
  function table(headers, rows) {
    var t = el("table"), tr = el("tr");
    headers.forEach(function (h) { tr.appendChild(el("th", "", h)); });
    t.appendChild(tr);
    rows.forEach(function (cells) {
      var r = el("tr");
      cells.forEach(function (c) {
        var td = el("td");
        td.appendChild(c instanceof Node ? c : prose(c));
        r.appendChild(td);
      });
      t.appendChild(r);
    });
    return t;
  }
  function content(doc, c) {
    var box = el("div");
    Object.keys(c || {}).forEach(function (type) {
      var line = el("div", "", type + ": ");
      line.appendChild(schemaLink(c[type].schema));
      box.appendChild(line);
    });
    return box;
  }
  function operation(doc, path, method, op, shared) {
    var sec = el("section", "op");
    sec.id = op.operationId || (method + path);
    var h = el("h3");
    h.appendChild(el("span", "method " + method, method.toUpperCase()));
    h.appendChild(el("span", "path", " " + path));
    if (op.security && op.security.length === 0) h.appendChild(el("span", "badge", "no API key"));
    sec.appendChild(h);
    if (op.summary) sec.appendChild(el("p", "summary", op.summary));
    if (op.description) sec.appendChild(prose(op.description));
    var params = (shared || []).concat(op.parameters || []).map(function (p) { return resolve(doc, p); });
    if (params.length) {
      sec.appendChild(el("h4", "", "Parameters"));
      sec.appendChild(table(["name", "in", "schema", "description"], params.map(function (p) {
        return [el("code", "", p.name + (p.required ? " *" : "")), el("span", "", p.in), schemaLink(p.schema), p.description || ""];
      })));
    }
    if (op.requestBody) {
      var rb = resolve(doc, op.requestBody);
      sec.appendChild(el("h4", "", "Request body" + (rb.required ? "" : " (optional)")));
      sec.appendChild(content(doc, rb.content));
    }
    sec.appendChild(el("h4", "", "Responses"));
    var codes = Object.keys(op.responses || {}).sort();
    sec.appendChild(table(["status", "description", "body"], codes.map(function (code) {
      var r = resolve(doc, op.responses[code]);
      return [el("code", "", code), r.description || "", content(doc, r.content)];
    })));
    return sec;
  }
  function schema(doc, name, s) {
    var sec = el("section", "schema");
    sec.id = "schema-" + name;
    sec.appendChild(el("h3", "", name));
    if (s.description) sec.appendChild(prose(s.description));
    var props = s.properties || {};
    var req = s.required || [];
    if (Object.keys(props).length) {
      sec.appendChild(table(["field", "schema", "description"], Object.keys(props).map(function (k) {
        return [el("code", "", k + (req.indexOf(k) >= 0 ? " *" : "")), schemaLink(props[k]), props[k].description || ""];
      })));
    } else if (s.oneOf) {
      sec.appendChild(table(["one of", "description"], s.oneOf.map(function (o) {
        return [el("code", "", Object.keys(o.properties || {}).join(", ")), (o.required || []).join(", ")];
      })));
    } else {
      var line = el("p");
      line.appendChild(schemaLink(s));
      sec.appendChild(line);
    }
    return sec;
  }
  function render(doc) {
    main.textContent = "";
    var info = doc.info || {};
    document.title = (info.title || "API") + " reference";
    main.appendChild(el("h1", "", info.title || "API"));
    main.appendChild(el("p", "muted", "OpenAPI " + doc.openapi + ", version " + (info.version || "?") + ". "));
    main.lastChild.appendChild(Object.assign(el("a", "", "Raw document"), { href: "openapi.json" }));
    if (info.description) main.appendChild(prose(info.description));
    var nav = el("nav");
    main.appendChild(nav);
    main.appendChild(el("h2", "", "Operations"));
    Object.keys(doc.paths || {}).forEach(function (path) {
      var item = doc.paths[path];
      METHODS.forEach(function (m) {
        if (!item[m]) return;
        var sec = operation(doc, path, m, item[m], item.parameters);
        main.appendChild(sec);
        var a = el("a", "", m.toUpperCase() + " " + path);
        a.href = "#" + sec.id;
        nav.appendChild(a);
      });
    });
    var schemas = (doc.components || {}).schemas || {};
    main.appendChild(el("h2", "", "Schemas"));
    Object.keys(schemas).forEach(function (name) { main.appendChild(schema(doc, name, schemas[name])); });
    if (location.hash) {
      var target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }
  fetch("openapi.json", { headers: { Accept: "application/json" } })
    .then(function (r) {
      if (!r.ok) throw new Error("GET openapi.json answered " + r.status);
      return r.json();
    })
    .then(render)
    .catch(function (e) { main.textContent = "Could not load the API description: " + e.message; });
})();
`

const docsStyle = `
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2330; background: #fafbfc; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem; }
h1 { margin-bottom: .2rem; }
h2 { border-bottom: 2px solid #d6dbe3; padding-bottom: .2rem; margin-top: 2.5rem; }
h3 { margin: 0 0 .4rem; font-size: 1.05rem; }
h4 { margin: .8rem 0 .3rem; font-size: .9rem; text-transform: uppercase; color: #5a6475; }
nav { columns: 2; font-size: .9rem; margin: 1rem 0; }
nav a { display: block; }
section { background: #fff; border: 1px solid #d6dbe3; border-radius: 6px; padding: .8rem 1rem; margin: .8rem 0; }
.method { display: inline-block; min-width: 4.2rem; text-align: center; border-radius: 4px; color: #fff; font-size: .8rem; padding: .1rem .3rem; }
.get { background: #2f7d32; } .post { background: #1f5fa8; } .delete { background: #b3261e; }
.put, .patch { background: #8a5a00; } .head, .options, .trace { background: #5a6475; }
.path { font-family: ui-monospace, monospace; }
.badge { margin-left: .6rem; font-size: .75rem; border: 1px solid #aab2bf; border-radius: 3px; padding: 0 .3rem; color: #5a6475; }
.summary { font-weight: 600; margin: .2rem 0; }
.muted { color: #5a6475; }
.prose p { margin: .3rem 0; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; vertical-align: top; border-top: 1px solid #e6e9ee; padding: .3rem .4rem; }
th { color: #5a6475; font-weight: 600; }
td .prose p { margin: 0; }
code { font-family: ui-monospace, monospace; background: #eef1f5; border-radius: 3px; padding: 0 .2rem; }
`

var (
	docsPage = []byte(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API reference</title>
<style>` + docsStyle + `</style>
</head>
<body>
<main id="main"><p>Loading the API description&hellip;</p><noscript>This page needs JavaScript; the raw description is at <a href="openapi.json">openapi.json</a>.</noscript></main>
<script>` + docsScript + `</script>
</body>
</html>
`)
	// docsCSP allows the page's own inline script and style by hash, and
	// fetching from its own origin; nothing else.
	docsCSP = "default-src 'none'; connect-src 'self'; img-src 'self' data:; " +
		"script-src '" + cspHash(docsScript) + "'; style-src '" + cspHash(docsStyle) + "'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}
