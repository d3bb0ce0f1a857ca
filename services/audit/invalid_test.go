package audit_test

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// rawEvent is a message as anyone allowed to publish on the events stream
// could send it.
type rawEvent struct {
	name    string
	subject string
	data    []byte
	want    contract.Code
	// stored is the payload kept, when not data as sent.
	stored string
}

func eventJSON(t *testing.T, ev contract.Event) []byte {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// invalidEvents are the four examples and more of their kind, each
// about a request of its own that must never appear in the record.
func invalidEvents(t *testing.T) []rawEvent {
	at := func(id string, typ contract.EventType) contract.Event {
		ev := contract.EventFor(command(id), typ)
		ev.ID, ev.Source, ev.Time = id+"-ev", "stager", t0
		return ev
	}
	weird := at("weird-type", "weird")
	negative := at("negative-bytes", contract.EventSucceeded)
	negative.Outcome, negative.Bytes = contract.OutcomeStaged, -5
	longName := at("long-username", contract.EventQueued)
	longName.Username = strings.Repeat("a", 5000)
	// Well formed in every field: only the stream shows that no worker
	// ever started it.
	shadow := at("made-up", contract.EventSucceeded)
	shadow.LocalPathOnStorage, shadow.RelativePath = "/etc/shadow", "shadow"
	shadow.Outcome, shadow.Bytes, shadow.Files, shadow.Attempt = contract.OutcomeStaged, 1234, 1, 1
	progress := at("made-up-progress", contract.EventProgress)
	progress.Progress = &contract.Progress{BytesDone: 1, BytesTotal: 2}
	resolved := at("made-up-resolved", contract.EventResolved)
	resolved.LocalPathOnStorage, resolved.DID = "", "testsrc:ds1"
	resolved.Resolved = &contract.Resolved{Files: 1, Bytes: 3, Part: 1, Parts: 1, Paths: []string{"etc/shadow"}}
	untimed := at("no-time", contract.EventQueued)
	untimed.Time = time.Time{}
	elsewhere := at("elsewhere", contract.EventQueued)
	climbs := at("climbs", contract.EventStarted)
	climbs.RelativePath = "../bob/x"
	dl := contract.DownloadEvent{SpecVersion: "1.0", ID: "dl-1", Type: contract.DownloadStarted, Time: t0, Source: "stager",
		RequestID: "download-bytes", DownloadID: "d1", Bytes: 10}
	dlData, err := json.Marshal(dl)
	if err != nil {
		t.Fatal(err)
	}
	misrouted := command("misrouted")
	misrouted.Method, misrouted.JupyterToken = contract.MethodJupyterCopy, "s3cr3t-t0ken-value"
	misroutedData, err := json.Marshal(misrouted)
	if err != nil {
		t.Fatal(err)
	}
	return []rawEvent{
		{"type weird", contract.EventSubject(weird.RequestID), eventJSON(t, weird), contract.CodeUnknownEventType, ""},
		{"bytes -5", contract.EventSubject(negative.RequestID), eventJSON(t, negative), contract.CodeMalformed, ""},
		{"username of 5000 characters", contract.EventSubject(longName.RequestID), eventJSON(t, longName), contract.CodeInvalidUsername, ""},
		{"made-up succeeded for /etc/shadow", contract.EventSubject(shadow.RequestID), eventJSON(t, shadow), contract.CodeNoStartedEvent, ""},
		{"made-up progress", contract.EventSubject(progress.RequestID), eventJSON(t, progress), contract.CodeNoStartedEvent, ""},
		{"made-up resolved", contract.EventSubject(resolved.RequestID), eventJSON(t, resolved), contract.CodeNoStartedEvent, ""},
		{"no time", contract.EventSubject(untimed.RequestID), eventJSON(t, untimed), contract.CodeMissingField, ""},
		{"another request's subject", contract.EventSubject("someone-else"), eventJSON(t, elsewhere), contract.CodeSubjectMismatch, ""},
		{"target climbs", contract.EventSubject(climbs.RequestID), eventJSON(t, climbs), contract.CodeOutsideUserArea, ""},
		{"not JSON", contract.EventSubject("not-json"), []byte("{\"type\":\"succeeded\",\xff"), contract.CodeMalformed, ""},
		{"download started with bytes", contract.DownloadSubject(dl.RequestID), dlData, contract.CodeMalformed, ""},
		{name: "a command with its secret on an event subject", subject: contract.EventSubject(misrouted.ID), data: misroutedData,
			want: contract.CodeMissingField, stored: strings.Replace(string(misroutedData), `"s3cr3t-t0ken-value"`, `"***"`, 1)},
	}
}

// Events that break the event rules never become history: no request
// record, no event in one; each is stored once among the invalid events,
// counted, acknowledged and listed on staging.audit.invalid. The real
// flows around them, including those that legitimately begin with a
// rejected or a started event, are recorded as before.
func TestInvalidEventsAreKeptApart(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := backend.cfg(t)
			a := e.start(t, cfg)
			bad := invalidEvents(t)

			// Real flows: through the gateway; published straight on NATS
			// (no queued event); refused at once (rejected alone, repeating
			// the refused username).
			valid := lifecycle(command("real-1"), 1, false)
			direct := lifecycle(command("real-direct"), 2, false)[1:]
			refusedCmd := command("real-rejected")
			refusedCmd.Username = strings.Repeat("b", 5000)
			refused := contract.EventFor(refusedCmd, contract.EventRejected)
			refused.ID, refused.Source, refused.Time = "real-rejected-ev", "stager", t0
			refused.Error = contract.Errorf(contract.CodeInvalidUsername, "username is longer than 32 characters")

			publish(t, e.js, valid[0], valid[1])
			for _, ev := range bad {
				if _, err := e.js.Publish(t.Context(), ev.subject, ev.data); err != nil {
					t.Fatal(err)
				}
			}
			publish(t, e.js, valid[2], refused)
			publish(t, e.js, direct...)

			testenv.Eventually(t, 15*time.Second, "every message to be stored or set apart", func() bool {
				return metric(t, a.reg, "staging_audit_events_total", "result", "stored") == float64(len(valid)+len(direct)+1) &&
					metric(t, a.reg, "staging_audit_events_total", "result", "invalid") == float64(len(bad))
			})
			testenv.Eventually(t, 15*time.Second, "every message to be acknowledged", func() bool {
				c, err := e.js.Consumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit)
				if err != nil {
					return false
				}
				info, err := c.Info(t.Context())
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
			})

			records := listAll(t, e.nc, contract.AuditListRequest{})
			got := map[string]contract.Status{}
			for _, r := range records {
				got[r.ID] = r.Status
			}
			want := map[string]contract.Status{"real-1": contract.StatusSucceeded, "real-direct": contract.StatusSucceeded, "real-rejected": contract.StatusRejected}
			if diff := gocmp.Diff(got, want); diff != "" {
				t.Errorf("records (-got +want):\n%s", diff)
			}
			if rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "real-rejected"}); rep.Record == nil || rep.Record.Username != strings.Repeat("b", 64) {
				t.Errorf("rejected record = %+v, want the refused username cut to 64 characters", rep.Record)
			}

			items := listInvalid(t, e)
			if len(items) != len(bad) {
				t.Fatalf("%d invalid events, want %d: %+v", len(items), len(bad), items)
			}
			slices.Reverse(items) // oldest first, as published
			for i, ev := range bad {
				it := items[i]
				stored := cmp.Or(ev.stored, string(ev.data))
				if it.Subject != ev.subject || it.Code != ev.want || it.Payload != strings.ToValidUTF8(stored, "\uFFFD") || it.Size != int64(len(stored)) || it.Reason == "" || it.StreamSeq == 0 {
					t.Errorf("%s: stored as %+v, want subject %s, code %s, the message as sent", ev.name, it, ev.subject, ev.want)
				}
			}
			wantCounts := map[contract.Code]float64{}
			for _, ev := range bad {
				wantCounts[ev.want]++
			}
			for code, n := range wantCounts {
				if got := metric(t, a.reg, "staging_audit_events_invalid_total", "reason", string(code)); got != n {
					t.Errorf("invalid events counted for %s = %v, want %v", code, got, n)
				}
			}
			if got := metric(t, a.reg, "staging_audit_events_total", "result", "invalid"); got != float64(len(bad)) {
				t.Errorf("invalid events = %v, want %d", got, len(bad))
			}

			// A started event recorded by an audit before this one (its
			// memory gone with it) still vouches for the succeeded event
			// that follows.
			late := lifecycle(command("real-late"), 3, false)
			publish(t, e.js, late[0], late[1])
			testenv.Eventually(t, 15*time.Second, "the late request to be running", func() bool {
				rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "real-late"})
				return rep.Record != nil && rep.Record.Status == contract.StatusRunning
			})
			a.stop()
			b := e.start(t, cfg)
			publish(t, e.js, late[2])
			testenv.Eventually(t, 15*time.Second, "the late request to succeed", func() bool {
				rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "real-late"})
				return rep.Record != nil && rep.Record.Status == contract.StatusSucceeded
			})
			if got := metric(t, b.reg, "staging_audit_events_total", "result", "invalid"); got != 0 {
				t.Errorf("invalid events after the restart = %v, want 0", got)
			}

			// A replay of the whole stream stores no invalid event twice.
			b.stop()
			if err := e.js.DeleteConsumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit); err != nil {
				t.Fatal(err)
			}
			c := e.start(t, cfg)
			testenv.Eventually(t, 15*time.Second, "the replay to be consumed", func() bool {
				return metric(t, c.reg, "staging_audit_events_total", "result", "duplicate") == float64(len(bad)+len(valid)+len(direct)+1+len(late))
			})
			if got := metric(t, c.reg, "staging_audit_events_total", "result", "invalid"); got != 0 {
				t.Errorf("invalid events stored again by the replay = %v, want 0", got)
			}
			if n := len(listInvalid(t, e)); n != len(bad) {
				t.Errorf("%d invalid events after the replay, want %d", n, len(bad))
			}
		})
	}
}

// listInvalid pages through every invalid event, newest first.
func listInvalid(t *testing.T, e env) []contract.InvalidEvent {
	t.Helper()
	var all []contract.InvalidEvent
	req := contract.AuditInvalidRequest{Limit: 3}
	for {
		rep := query[contract.AuditInvalidReply](t, e.nc, contract.SubjectAuditInvalid, req)
		if rep.Error != nil {
			t.Fatalf("invalid: %v", rep.Error)
		}
		all = append(all, rep.Items...)
		if rep.NextCursor == "" {
			return all
		}
		req.Cursor = rep.NextCursor
	}
}

func TestInvalidQueryErrors(t *testing.T) {
	e := newEnv(t)
	e.start(t, sqliteConfig(t))
	for _, body := range []string{`{`, `{"limit":-1}`, `{"cursor":"!!"}`} {
		msg, err := e.nc.Request(contract.SubjectAuditInvalid, []byte(body), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var rep contract.AuditInvalidReply
		if err := json.Unmarshal(msg.Data, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Error == nil || rep.Error.Code != contract.CodeMalformed || rep.Items == nil {
			t.Errorf("%s: reply %s, want malformed and empty items", body, msg.Data)
		}
	}
}
