package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// A direct_download through the REST API, its link fetched through the
// gateway: the audit records the download beside the request, whose status
// stays succeeded.
func TestDownloadReachesTheAudit(t *testing.T) {
	sys := startSystem(t, "", "")
	var sub struct {
		ID string `json:"id"`
	}
	status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
		"method": "direct_download", "username": "alice",
		"local_path_on_storage": sampleFile, "relative_path": "hello.txt",
	}, &sub)
	if status != http.StatusAccepted || sub.ID == "" {
		t.Fatalf("POST /api/v1/stagings = %d %+v, want 202 with an id", status, sub)
	}
	state := sys.waitStatus(t, sub.ID, "succeeded")
	link, _ := state["download_url"].(string)
	if link == "" {
		t.Fatalf("no download_url in %v", state)
	}
	if !strings.HasPrefix(link, "http") {
		link = sys.httpURL + link
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != sampleContent {
		t.Fatalf("GET %s = %d %q (%v), want the sample file", link, resp.StatusCode, body, err)
	}

	var reply contract.AuditGetReply
	req, _ := json.Marshal(contract.AuditGetRequest{ID: sub.ID, WithEvents: true})
	completed := func() *contract.DownloadEvent {
		for i, dl := range reply.Downloads {
			if dl.Type == contract.DownloadCompleted {
				return &reply.Downloads[i]
			}
		}
		return nil
	}
	testenv.Eventually(t, 20*time.Second, "the audit to record the download of "+sub.ID, func() bool {
		msg, err := sys.rt.NC.Request(contract.SubjectAuditGet, req, 2*time.Second)
		if err != nil {
			return false
		}
		reply = contract.AuditGetReply{}
		return json.Unmarshal(msg.Data, &reply) == nil && reply.Record != nil && completed() != nil
	}, func() string { return jsonText(reply) })
	dl := completed()
	if dl.Bytes != int64(len(sampleContent)) || dl.Username != "alice" || dl.TraceID == "" {
		t.Errorf("download_completed = %+v, want %d bytes for alice with the request's trace", dl, len(sampleContent))
	}
	if len(reply.Downloads) != 2 || reply.Downloads[0].Type != contract.DownloadStarted || reply.Downloads[0].DownloadID != dl.DownloadID {
		t.Errorf("downloads = %s, want the start and the end of one download", jsonText(reply.Downloads))
	}
	if rec := reply.Record; rec.Status != contract.StatusSucceeded || rec.Outcome != contract.OutcomeLinkIssued || rec.Downloads != 1 {
		t.Errorf("audit record = %+v, want succeeded, link_issued, 1 download", rec)
	}
	for _, ev := range reply.Events {
		if strings.HasPrefix(string(ev.Type), "download") {
			t.Errorf("a download among the request's events: %+v", ev)
		}
	}
	// The request's state is still its last event.
	if got := sys.waitStatus(t, sub.ID, "succeeded"); got["download_url"] == nil {
		t.Errorf("state after the download = %v, want it unchanged", got)
	}
	if trace := reply.Record.TraceID; trace != dl.TraceID {
		t.Errorf("download trace %s, request trace %s: want the same", dl.TraceID, trace)
	}
}
