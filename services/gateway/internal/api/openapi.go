package api

import (
	_ "embed"
	"net/http"
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
