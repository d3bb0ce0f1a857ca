// Package contracttest checks messages against the contract's JSON Schemas
// in tests, so every test that sees a command or an event can assert that
// it is what docs/messages.md promises.
package contracttest

import (
	"bytes"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/skao/skao-staging/libs/contract"
)

// The schema files in contract.Schemas.
const (
	Command  = "command.schema.json"
	Event    = "event.schema.json"
	Download = "download.schema.json"
	Cancel   = "cancel.schema.json"
)

// Schema compiles the named schema (Command, Event, Download or Cancel).
func Schema(t testing.TB, name string) *jsonschema.Schema {
	t.Helper()
	data, err := contract.Schemas.ReadFile("schema/" + name)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

// Check reports a test error when data is not JSON that satisfies s.
func Check(t testing.TB, s *jsonschema.Schema, data []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Errorf("message is not JSON: %v\n%s", err, data)
		return
	}
	if err := s.Validate(doc); err != nil {
		t.Errorf("message does not match its schema: %v\n%s", err, data)
	}
}
