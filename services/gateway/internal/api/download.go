package api

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
)

// NewDownloadProxy forwards download requests, path unchanged, to the
// stager's download listener at target. Bodies stream through in both
// directions and Range headers pass untouched, so resumed and large
// downloads work without the gateway holding a file.
func NewDownloadProxy(target *url.URL, log *slog.Logger) http.Handler {
	log = requestIDLog(log)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		// Flush as data arrives: a slow archive stream should reach the
		// client as it is produced.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			log.ErrorContext(r.Context(), "download_proxy_failed", "error", err)
			if r.Context().Err() != nil {
				return
			}
			writeErrorStatus(w, r, http.StatusBadGateway,
				contract.Errorf(contract.CodeUnavailable, "the download service is unreachable; try again later"))
		},
	}
	// A download may outlast the server's write timeout: each write gets
	// one of its own.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(service.StreamWriter(w, r), r)
	})
}
