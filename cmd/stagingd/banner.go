package main

import (
	"fmt"
	"io"
	"strings"
)

// printBanner tells a person what runs where and what to try next.
func printBanner(w io.Writer, s *system) {
	var b strings.Builder
	fmt.Fprintf(&b, "\nskao-staging is running: %s\n\n", s.httpURL)
	fmt.Fprintf(&b, "  web UI:          %s/\n", s.httpURL)
	fmt.Fprintf(&b, "  API description: %s/docs\n", s.httpURL)
	for _, n := range s.notices {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	natsKind := "embedded"
	if s.nats == nil {
		natsKind = "external"
	}
	fmt.Fprintf(&b, "  NATS (%s):   %s\n", natsKind, s.natsURL)
	if s.natsKey != "" {
		fmt.Fprintf(&b, "  NATS key file:   %s (NATS lets in only clients holding it; a standalone service: STAGING_NATS_NKEY_FILE)\n", s.natsKey)
	}
	fmt.Fprintf(&b, "  storage root:    %s\n", s.cfg.Stager.SourceRoot)
	fmt.Fprintf(&b, "  user areas:      %s\n", s.cfg.Stager.UserAreaRoot)
	fmt.Fprintf(&b, "  audit database:  %s\n", s.auditStore)
	if s.cfg.Jupyter.HubURL == "" {
		fmt.Fprintf(&b, "  jupyter_copy:    off (set JUPYTERHUB_URL and JUPYTERHUB_API_TOKEN)\n")
	} else {
		fmt.Fprintf(&b, "  JupyterHub:      %s\n", s.cfg.Jupyter.HubURL)
	}
	fmt.Fprintf(&b, "\nTry it:\n\n")
	if s.cfg.authOn() {
		fmt.Fprintf(&b, "  (STAGING_AUTH_MODE=%s: add -H 'Authorization: Bearer <token>' to each curl line)\n", s.cfg.Gateway.AuthMode)
	}
	fmt.Fprintf(&b, "  curl -s -X POST %s/api/v1/stagings -H 'Content-Type: application/json' \\\n", s.httpURL)
	fmt.Fprintf(&b, "    -d '{\"method\":\"local_copy\",\"username\":\"alice\",\"local_path_on_storage\":\"%s\",\"relative_path\":\"hello.txt\"}'\n", sampleFile)
	fmt.Fprintf(&b, "  curl -s %s/api/v1/stagings/<id from the answer>\n", s.httpURL)
	fmt.Fprintf(&b, "  curl -s '%s/api/v1/stagings?username=alice'\n", s.httpURL)
	fmt.Fprintf(&b, "  curl -s -X POST '%s/stage_data?method=local_copy&username=bob' \\\n", s.httpURL)
	fmt.Fprintf(&b, "    -H 'Content-Type: application/json' -d '{\"local_path_on_storage\":\"sample/tree\",\"relative_path\":\"tree\"}'\n")
	if s.natsKey != "" {
		fmt.Fprintf(&b, "  nats -s %s --nkey %s sub 'staging.events.>'\n", s.natsURL, s.natsKey)
	}
	fmt.Fprintf(&b, "\nStop with Ctrl-C.\n\n")
	io.WriteString(w, b.String())
}
