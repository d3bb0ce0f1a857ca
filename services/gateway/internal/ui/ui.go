// Package ui is the gateway's small web UI: a staging form with a storage
// browser, live cards for requests and jobs (Server-Sent Events: progress,
// download links, cancel), the history with filters and paging, the system
// log viewer and, in demo mode, a file-creation tool. It is plain HTML,
// CSS and one JavaScript module embedded in the binary: no build step, no
// CDN, and every call it makes is a documented API call.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Handler serves the UI: index.html at /, the other files under /ui/.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			name = strings.TrimPrefix(r.URL.Path, "/ui/")
		}
		if name == "" || strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		// Only the UI's own files run; the API is same-origin.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, name)
	})
}
