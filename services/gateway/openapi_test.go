package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/skao/skao-staging/services/gateway"
)

// apiDoc is the OpenAPI document every response the tests get is checked
// against, so the document and the implementation cannot drift apart.
var apiDoc struct {
	once     sync.Once
	err      error
	raw      []byte
	doc      map[string]any
	compiler *jsonschema.Compiler
	paths    []docPath
	mu       sync.Mutex
	schemas  map[string]*jsonschema.Schema
}

type docPath struct {
	template string
	re       *regexp.Regexp
}

func loadContract() error {
	apiDoc.once.Do(func() {
		apiDoc.raw, apiDoc.err = os.ReadFile("internal/api/openapi.json")
		if apiDoc.err != nil {
			return
		}
		if apiDoc.err = json.Unmarshal(apiDoc.raw, &apiDoc.doc); apiDoc.err != nil {
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(apiDoc.raw))
		if err != nil {
			apiDoc.err = err
			return
		}
		apiDoc.compiler = jsonschema.NewCompiler()
		apiDoc.compiler.DefaultDraft(jsonschema.Draft2020)
		apiDoc.compiler.AssertFormat()
		if apiDoc.err = apiDoc.compiler.AddResource("openapi.json", doc); apiDoc.err != nil {
			return
		}
		for tmpl := range apiDoc.doc["paths"].(map[string]any) {
			segs := strings.Split(tmpl, "/")
			for i, seg := range segs {
				if strings.HasPrefix(seg, "{") {
					segs[i] = `[^/]+`
				} else {
					segs[i] = regexp.QuoteMeta(seg)
				}
			}
			apiDoc.paths = append(apiDoc.paths, docPath{tmpl, regexp.MustCompile("^" + strings.Join(segs, "/") + "$")})
		}
		apiDoc.schemas = map[string]*jsonschema.Schema{}
	})
	return apiDoc.err
}

// pointer escapes a key for a JSON pointer.
func pointer(keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// resolve follows a local $ref of node, returning the target and its pointer.
func resolve(node map[string]any, ptr string) (map[string]any, string) {
	for {
		ref, ok := node["$ref"].(string)
		if !ok {
			return node, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
		var cur any = apiDoc.doc
		for _, k := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
			k = strings.ReplaceAll(strings.ReplaceAll(k, "~1", "/"), "~0", "~")
			cur = cur.(map[string]any)[k]
		}
		node = cur.(map[string]any)
	}
}

// checkContract validates a response to method path against the document:
// a documented operation must document the status, and a JSON body must
// match its schema. Paths and operations the document does not hold (test
// routes, unknown paths, wrong methods) are not checked.
func checkContract(method, path string, r response) error {
	if err := loadContract(); err != nil {
		return fmt.Errorf("openapi.json: %w", err)
	}
	path, _, _ = strings.Cut(path, "?")
	tmpl := ""
	for _, p := range apiDoc.paths {
		if p.re.MatchString(path) && (tmpl == "" || !strings.Contains(p.template, "{")) {
			tmpl = p.template
		}
	}
	if tmpl == "" {
		return nil
	}
	item, ptr := resolve(apiDoc.doc["paths"].(map[string]any)[tmpl].(map[string]any), pointer("paths", tmpl))
	opAny, ok := item[strings.ToLower(method)]
	if !ok {
		return nil
	}
	op, ptr := resolve(opAny.(map[string]any), ptr+pointer(strings.ToLower(method)))
	status := fmt.Sprint(r.status)
	respAny, ok := op["responses"].(map[string]any)[status]
	if !ok {
		return fmt.Errorf("%s %s answered %d, which openapi.json does not document for %s", method, path, r.status, tmpl)
	}
	resp, ptr := resolve(respAny.(map[string]any), ptr+pointer("responses", status))
	ct, _, _ := strings.Cut(r.header.Get("Content-Type"), ";")
	if ct != "application/json" {
		return nil
	}
	content, _ := resp["content"].(map[string]any)
	media, ok := content["application/json"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s answered %d with JSON, which openapi.json does not document", method, path, r.status)
	}
	_, ptr = resolve(media["schema"].(map[string]any), ptr+pointer("content", "application/json", "schema"))
	apiDoc.mu.Lock()
	sch, ok := apiDoc.schemas[ptr]
	if !ok {
		var err error
		sch, err = apiDoc.compiler.Compile("openapi.json#" + ptr)
		if err != nil {
			apiDoc.mu.Unlock()
			return fmt.Errorf("compile %s: %w", ptr, err)
		}
		apiDoc.schemas[ptr] = sch
	}
	apiDoc.mu.Unlock()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(r.body))
	if err != nil {
		return fmt.Errorf("%s %s: body is not JSON: %w", method, path, err)
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%s %s %d does not match openapi.json %s: %w\n%s", method, path, r.status, ptr, err, r.body)
	}
	return nil
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	resp := e.do("GET", "/openapi.json", "")
	if err := loadContract(); err != nil {
		t.Fatal(err)
	}
	if resp.status != 200 || !bytes.Equal(resp.body, apiDoc.raw) {
		t.Errorf("GET /openapi.json: %d, %d bytes; want the document", resp.status, len(resp.body))
	}
}
