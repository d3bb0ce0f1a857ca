package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/skao/skao-staging/libs/contract"
)

// decodeBody reads a JSON body of at most limit bytes into v. Its
// Content-Type must be JSON: a form or text/plain body is what a page on
// another site can make a browser post without asking (CORS lets "simple"
// requests through), so refusing it stops cross-site posts.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if err := jsonContent(r, false); err != nil {
		return err
	}
	return readJSON(w, r, limit, v)
}

// decodeSeedBody is decodeBody for the seed's endpoints, which also take a
// body without a Content-Type, as the seed (FastAPI) did: scripts posting
// with Python requests' data= send none. A browser sends none only for a
// no-cors fetch of an untyped body, a cross-site post like a form's, so
// from a browser on another site (Sec-Fetch-Site) it is refused all the
// same.
func decodeSeedBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if err := jsonContent(r, true); err != nil {
		return err
	}
	return readJSON(w, r, limit, v)
}

// jsonContent checks that r's Content-Type is application/json or another
// JSON type (application/*+json), parameters such as charset allowed. A
// request without one and without a body passes on, to be answered
// missing_field; untyped lets a body without one through unless a browser
// says it comes from another site.
func jsonContent(r *http.Request, untyped bool) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		if r.ContentLength == 0 || untyped && site != "cross-site" && site != "same-site" {
			return nil
		}
		return contract.Errorf(contract.CodeUnsupportedMediaType, "the request body must be JSON, sent with Content-Type: application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return contract.Errorf(contract.CodeUnsupportedMediaType, "the request body must be JSON, sent with Content-Type: application/json; this one was sent as another type")
}

// readJSON reads a JSON body of at most limit bytes into v.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return contract.Errorf(contract.CodeBodyTooLarge, "request body is larger than %d bytes", limit)
		}
		return contract.Errorf(contract.CodeMalformed, "request body could not be read: %v", err)
	}
	if len(data) == 0 {
		return contract.Errorf(contract.CodeMissingField, "a JSON request body is required")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return contract.Errorf(contract.CodeMalformed, "request body is not valid JSON of the expected shape: %v", err)
	}
	return nil
}
