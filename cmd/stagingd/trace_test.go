package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
)

// spanAttrs is the attributes of a span by key.
func spanAttrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// requestTrace returns the trace id the events of request id carry.
func (s running) requestTrace(t *testing.T, id string) string {
	t.Helper()
	stream, err := s.rt.JS.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), contract.EventSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	var ev contract.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.TraceID == "" {
		t.Fatalf("last event %s has no trace id (%v)", msg.Data, err)
	}
	return ev.TraceID
}

// A download through a link, fetched later through the gateway by a
// client that sends no trace, joins the trace of the request that issued
// the link: its stager.download span (request id, bytes, files) and the
// audit's spans of its download events are in that trace, and the span
// links to the gateway's trace of the HTTP GET. The worker's span carries
// the request's bytes and files, and every span's resource the service's
// version.
func TestDownloadJoinsTheRequestTrace(t *testing.T) {
	sys := startSystem(t, "", "")
	var sub struct{ ID string }
	if status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
		"method": "direct_download", "username": "alice", "local_path_on_storage": sampleFile, "relative_path": "hello.txt",
	}, &sub); status != http.StatusAccepted {
		t.Fatalf("POST /api/v1/stagings = %d, want 202", status)
	}
	link, _ := sys.waitStatus(t, sub.ID, "succeeded")["download_url"].(string)
	if !strings.HasPrefix(link, "http") {
		link = sys.httpURL + link
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET link = %d, want 200", resp.StatusCode)
	}
	traceID := sys.requestTrace(t, sub.ID)

	size := int64(len(sampleContent))
	var download, handle *tracetest.SpanStub
	auditTypes := map[string]bool{}
	var all tracetest.SpanStubs
	testenv.Eventually(t, 20*time.Second, "the download's spans in trace "+traceID, func() bool {
		all = sys.spans.GetSpans()
		download, handle = nil, nil
		for i, sp := range all {
			if sp.SpanContext.TraceID().String() != traceID {
				continue
			}
			switch sp.Name {
			case "stager.download":
				download = &all[i]
			case "stager.handle":
				handle = &all[i]
			case "audit record":
				auditTypes[spanAttrs(sp)["staging.event_type"].AsString()] = true
			}
		}
		return download != nil && handle != nil && auditTypes[string(contract.DownloadStarted)] && auditTypes[string(contract.DownloadCompleted)]
	}, func() string { return jsonText(auditTypes) })

	a := spanAttrs(*download)
	if a[telemetry.AttrRequestID].AsString() != sub.ID || a[telemetry.AttrBytes].AsInt64() != size || a[telemetry.AttrFiles].AsInt64() != 1 {
		t.Errorf("stager.download attributes %v, want request id %s, %d bytes, 1 file", download.Attributes, sub.ID, size)
	}
	if download.Parent.SpanID() != handle.SpanContext.SpanID() {
		t.Errorf("stager.download's parent is %s, want the stager.handle span %s that issued the link", download.Parent.SpanID(), handle.SpanContext.SpanID())
	}
	if len(download.Links) != 1 {
		t.Fatalf("stager.download has links %v, want one to the gateway's GET", download.Links)
	}
	linked := download.Links[0].SpanContext
	gatewayGET := false
	for _, sp := range all {
		if sp.SpanContext.SpanID() == linked.SpanID() && sp.InstrumentationScope.Name == "skao-staging/gateway" && strings.HasPrefix(sp.Name, "GET ") {
			gatewayGET = true
		}
	}
	if !gatewayGET || linked.TraceID().String() == traceID {
		t.Errorf("stager.download links to %v, want the gateway's GET span in a trace of its own", linked)
	}
	// Issuing a link copies nothing: 0 bytes and 0 files, said all the same.
	h := spanAttrs(*handle)
	_, hasBytes := h[telemetry.AttrBytes]
	_, hasFiles := h[telemetry.AttrFiles]
	if h[telemetry.AttrRequestID].AsString() != sub.ID || !hasBytes || !hasFiles {
		t.Errorf("stager.handle attributes %v, want request id %s, bytes and files", handle.Attributes, sub.ID)
	}
	if v, ok := download.Resource.Set().Value(semconv.ServiceVersionKey); !ok || v.AsString() != telemetry.Version() {
		t.Errorf("resource %v, want service.version %q", download.Resource.Attributes(), telemetry.Version())
	}
}

// The bridge's calls to the hub are client spans in the request's trace,
// and the hub receives that trace.
func TestBridgeTracesHubCalls(t *testing.T) {
	var mu sync.Mutex
	var parents []string
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("traceparent"))
		mu.Unlock()
		http.NotFound(w, r)
	}))
	t.Cleanup(hub.Close)
	t.Setenv("STAGING_JUPYTERHUB_URL", hub.URL)
	t.Setenv("STAGING_JUPYTERHUB_API_TOKEN", "unused")
	sys := startSystem(t, "", "")
	var sub struct{ ID string }
	if status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
		"method": "jupyter_copy", "username": "alice", "local_path_on_storage": sampleFile, "relative_path": "hello.txt",
	}, &sub); status != http.StatusAccepted {
		t.Fatalf("POST /api/v1/stagings = %d, want 202", status)
	}
	sys.waitAudit(t, sub.ID, contract.StatusFailed)
	traceID := sys.requestTrace(t, sub.ID)

	var calls []string
	testenv.Eventually(t, 20*time.Second, "spans of the hub calls in trace "+traceID, func() bool {
		calls = nil
		for _, sp := range sys.spans.GetSpans() {
			if sp.SpanContext.TraceID().String() == traceID && strings.HasPrefix(sp.Name, "hub ") {
				calls = append(calls, sp.Name)
			}
		}
		return len(calls) > 0
	}, func() string { return jsonText(calls) })
	mu.Lock()
	defer mu.Unlock()
	sent := false
	for _, p := range parents {
		sent = sent || strings.Contains(p, traceID)
	}
	if !sent {
		t.Errorf("the hub got traceparents %q, none of trace %s", parents, traceID)
	}
}

// The worker's span of a copy carries the request id, and the bytes and
// files it staged.
func TestCopySpanCarriesBytesAndFiles(t *testing.T) {
	sys := startSystem(t, "", "")
	var sub struct{ ID string }
	if status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
		"method": "local_copy", "username": "alice", "local_path_on_storage": sampleFile, "relative_path": "hello.txt",
	}, &sub); status != http.StatusAccepted {
		t.Fatalf("POST /api/v1/stagings = %d, want 202", status)
	}
	sys.waitAudit(t, sub.ID, contract.StatusSucceeded)
	var handle *tracetest.SpanStub
	testenv.Eventually(t, 20*time.Second, "the stager.handle span of "+sub.ID, func() bool {
		for _, sp := range sys.spans.GetSpans() {
			if sp.Name == "stager.handle" && spanAttrs(sp)[telemetry.AttrRequestID].AsString() == sub.ID {
				handle = &sp
			}
		}
		return handle != nil
	}, func() string { return "" })
	a := spanAttrs(*handle)
	if a[telemetry.AttrBytes].AsInt64() != int64(len(sampleContent)) || a[telemetry.AttrFiles].AsInt64() != 1 {
		t.Errorf("stager.handle attributes %v, want %d bytes and 1 file", handle.Attributes, len(sampleContent))
	}
}
