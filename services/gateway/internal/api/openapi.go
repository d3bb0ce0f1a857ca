package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/gorilla/mux"
)

// OpenAPI is the OpenAPI 3.1 document of the gateway's HTTP API. The tests
// check every response they get against it, so it cannot drift from the
// implementation unnoticed.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	// The status is on the wire; a failed write means the client left.
	_, _ = w.Write(OpenAPI)
}

// docsPage is the readable page of the document, rendered once: it is
// the same for every request.
var docsPage = sync.OnceValues(func() ([]byte, error) {
	// The document is embedded and static: nothing to cancel.
	doc, err := LoadOpenAPI(context.Background())
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := docsTemplate.Execute(&b, docsView(doc)); err != nil {
		return nil, fmt.Errorf("render docs: %w", err)
	}
	return b.Bytes(), nil
})

// LoadOpenAPI parses and validates the embedded document.
func LoadOpenAPI(ctx context.Context) (*openapi3.T, error) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	if err := doc.Validate(ctx); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	return doc, nil
}

// serveDocs is /docs: the document as one self-contained HTML page, with
// no script and nothing fetched from elsewhere.
func serveDocs(w http.ResponseWriter, r *http.Request) {
	page, err := docsPage()
	if err != nil {
		writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(page)
}

type docsOp struct {
	Method, Path, Summary, Description string
	Params                             []docsParam
	Body                               []docsMedia
	Responses                          []docsResponse
}

type docsParam struct {
	Name, In, Schema, Description string
	Required                      bool
}

type docsMedia struct {
	Type, Schema, Example string
}

type docsResponse struct {
	Status, Description string
	Media               []docsMedia
}

type docsSchema struct {
	Name, Description, JSON string
}

type docsData struct {
	Title, Version, Description string
	Ops                         []docsOp
	Schemas                     []docsSchema
}

func docsView(doc *openapi3.T) docsData {
	d := docsData{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description}
	for _, path := range slices.Sorted(maps.Keys(doc.Paths.Map())) {
		item := doc.Paths.Value(path)
		for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
			op := item.GetOperation(method)
			if op == nil {
				continue
			}
			o := docsOp{Method: method, Path: path, Summary: op.Summary, Description: op.Description}
			for _, p := range append(slices.Clone(item.Parameters), op.Parameters...) {
				if p.Value == nil {
					continue
				}
				o.Params = append(o.Params, docsParam{Name: p.Value.Name, In: p.Value.In, Required: p.Value.Required, Description: p.Value.Description, Schema: schemaName(p.Value.Schema)})
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				o.Body = media(op.RequestBody.Value.Content)
			}
			for _, status := range slices.Sorted(maps.Keys(op.Responses.Map())) {
				resp := op.Responses.Value(status)
				if resp == nil || resp.Value == nil {
					continue
				}
				desc := ""
				if resp.Value.Description != nil {
					desc = *resp.Value.Description
				}
				o.Responses = append(o.Responses, docsResponse{Status: status, Description: desc, Media: media(resp.Value.Content)})
			}
			d.Ops = append(d.Ops, o)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(doc.Components.Schemas)) {
		s := doc.Components.Schemas[name]
		raw, _ := json.MarshalIndent(s.Value, "", "  ")
		d.Schemas = append(d.Schemas, docsSchema{Name: name, Description: s.Value.Description, JSON: string(raw)})
	}
	return d
}

func media(c openapi3.Content) []docsMedia {
	var out []docsMedia
	for _, t := range slices.Sorted(maps.Keys(c)) {
		m := c[t]
		dm := docsMedia{Type: t, Schema: schemaName(m.Schema)}
		if m.Example != nil {
			raw, _ := json.MarshalIndent(m.Example, "", "  ")
			dm.Example = string(raw)
		}
		for _, name := range slices.Sorted(maps.Keys(m.Examples)) {
			if ex := m.Examples[name]; ex != nil && ex.Value != nil && dm.Example == "" {
				raw, _ := json.MarshalIndent(ex.Value.Value, "", "  ")
				dm.Example = string(raw)
			}
		}
		out = append(out, dm)
	}
	return out
}

// schemaName names a schema by its component, or describes an inline one.
func schemaName(s *openapi3.SchemaRef) string {
	switch {
	case s == nil:
		return ""
	case s.Ref != "":
		return strings.TrimPrefix(s.Ref, "#/components/schemas/")
	case s.Value == nil:
		return ""
	}
	v := s.Value
	switch {
	case v.Type != nil && v.Type.Is("array") && v.Items != nil:
		return "array of " + schemaName(v.Items)
	case len(v.Enum) > 0:
		parts := make([]string, len(v.Enum))
		for i, e := range v.Enum {
			parts[i] = fmt.Sprint(e)
		}
		return "one of " + strings.Join(parts, ", ")
	case v.Type != nil:
		t := strings.Join(v.Type.Slice(), "|")
		if v.Format != "" {
			t += " (" + v.Format + ")"
		}
		return t
	}
	return "object"
}

var docsTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} {{.Version}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
.op{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.5em 1em}
.m{display:inline-block;min-width:4em;font-weight:bold;padding:.1em .4em;border-radius:4px;color:#fff;background:#555}
.GET{background:#2b6cb0}.POST{background:#2f855a}
code,pre{font-family:ui-monospace,monospace;font-size:.9em}
pre{background:#f6f6f6;padding:.5em;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
</style></head><body>
<h1>{{.Title}} <small>{{.Version}}</small></h1>
<p>{{.Description}}</p>
<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a>.</p>
<h2>Operations</h2>
{{range .Ops}}<div class="op" id="{{.Method}}{{.Path}}">
<h3><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code></h3>
<p>{{.Summary}}</p>{{if .Description}}<p>{{.Description}}</p>{{end}}
{{if .Params}}<table><tr><th>parameter</th><th>in</th><th>schema</th><th>required</th><th>description</th></tr>
{{range .Params}}<tr><td><code>{{.Name}}</code></td><td>{{.In}}</td><td>{{.Schema}}</td><td>{{if .Required}}yes{{end}}</td><td>{{.Description}}</td></tr>
{{end}}</table>{{end}}
{{range .Body}}<p>Request body <code>{{.Type}}</code>: <a href="#schema-{{.Schema}}">{{.Schema}}</a></p>{{if .Example}}<pre>{{.Example}}</pre>{{end}}{{end}}
<table><tr><th>status</th><th>description</th><th>content</th></tr>
{{range .Responses}}<tr><td>{{.Status}}</td><td>{{.Description}}</td><td>{{range .Media}}<code>{{.Type}}</code> <a href="#schema-{{.Schema}}">{{.Schema}}</a>{{if .Example}}<pre>{{.Example}}</pre>{{end}}<br>{{end}}</td></tr>
{{end}}</table>
</div>
{{end}}
<h2>Schemas</h2>
{{range .Schemas}}<h3 id="schema-{{.Name}}">{{.Name}}</h3>{{if .Description}}<p>{{.Description}}</p>{{end}}<pre>{{.JSON}}</pre>
{{end}}
</body></html>
`))

// Route is one route of the router: its path template and methods.
type Route struct {
	Template string
	Methods  []string
}

// Routes lists every route the gateway serves, for the test that checks
// the OpenAPI document covers them all.
func (s *Server) Routes() ([]Route, error) {
	var out []Route
	err := s.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		methods, err := route.GetMethods()
		if err != nil {
			return fmt.Errorf("route %s: %w", tmpl, err)
		}
		out = append(out, Route{Template: tmpl, Methods: methods})
		return nil
	})
	return out, err
}
