package recorder

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
)

// TestUnmarshalAsEncodingJSON: the audit's decoder reads every message the
// contract defines, and the odd ones a publisher might send, exactly as
// encoding/json does: the same fields, the same errors.
func TestUnmarshalAsEncodingJSON(t *testing.T) {
	golden, err := filepath.Glob("../../../../libs/contract/testdata/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(golden) < 8 {
		t.Fatalf("found %d golden messages of the contract, want its events and download events", len(golden))
	}
	cases := map[string]string{
		"invalid UTF-8":                "{\"id\":\"a\xffb\",\"request_id\":\"r\xc3\",\"type\":\"queued\",\"time\":\"2026-11-27T10:00:00Z\"}",
		"lone surrogate":               `{"id":"a\ud800","source":"s\udc00x"}`,
		"escapes":                      `{"id":"\u00e9\n\"\\\/","username":"\ud83d\ude00"}`,
		"names in another case":        `{"ID":"a","Request_ID":"r","TYPE":"started","Time":"2026-11-27T10:00:00.123456789+02:00"}`,
		"a name twice":                 `{"id":"a","id":"b","error":{"code":"x"},"error":{"detail":"y"}}`,
		"nulls":                        `{"id":null,"error":null,"progress":null,"bytes":null,"time":null}`,
		"unknown fields":               `{"id":"a","later":{"deep":[1,2.5e3,{"x":null}],"s":"\u0000"},"bytes":7}`,
		"number into a string":         `{"id":1}`,
		"fraction into an integer":     `{"id":"a","bytes":1.5}`,
		"string into an integer":       `{"id":"a","files":"1"}`,
		"integer too large":            `{"id":"a","bytes":9223372036854775808}`,
		"not a time":                   `{"id":"a","time":"yesterday"}`,
		"text after the object":        `{"id":"a"} x`,
		"not an object":                `[1]`,
		"empty":                        ``,
		"truncated":                    `{"id":"a","request_id":"`,
		"white space and a second obj": " \n{\"id\":\"a\"}\n{\"id\":\"b\"}",
	}
	for _, path := range golden {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cases[filepath.Base(path)] = string(data)
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			same(t, []byte(data), func() any { return new(contract.Event) })
			same(t, []byte(data), func() any { return new(contract.DownloadEvent) })
		})
	}
}

func same(t *testing.T, data []byte, v func() any) {
	t.Helper()
	got, want := v(), v()
	gotErr, wantErr := unmarshal(data, got), json.Unmarshal(data, want)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%T: error %v, want %v", got, gotErr, wantErr)
	}
	if wantErr != nil {
		return // the message is terminated: what was decoded is not used
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("%T differs from encoding/json (-got +want):\n%s", got, diff)
	}
}
