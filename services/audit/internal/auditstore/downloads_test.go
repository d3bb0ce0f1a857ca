package auditstore_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

func download(c contract.Command, typ contract.DownloadEventType, seq int, when time.Time, sent int64) contract.DownloadEvent {
	dl := contract.DownloadEvent{
		SpecVersion: contract.SpecVersion, ID: fmt.Sprintf("%s-dl-%d", c.ID, seq), Type: typ, Time: when, Source: "stager",
		RequestID: c.ID, DownloadID: fmt.Sprintf("%s-download-%d", c.ID, (seq+1)/2), Username: c.Username,
		LocalPathOnStorage: c.LocalPathOnStorage, Bytes: sent,
	}
	if typ == contract.DownloadFailed {
		dl.Error = contract.Errorf(contract.CodeClientGone, "the client closed the connection after %d bytes", sent)
	}
	return dl
}

// A link's downloads are stored with the request's history, apart from its
// events; they count on the record and change nothing else, however often
// they are applied.
func TestDownloadsKeepTheStatus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		c.Method = contract.MethodDirectDownload
		evs := lifecycle(c)
		evs[3].Outcome, evs[3].Bytes, evs[3].Files, evs[3].Adler32, evs[3].DownloadURL = contract.OutcomeLinkIssued, 0, 0, "", "/api/v1/downloads/x"
		downloads := []contract.DownloadEvent{
			download(c, contract.DownloadStarted, 1, at(10), 0),
			download(c, contract.DownloadCompleted, 2, at(12), 2048),
			download(c, contract.DownloadStarted, 3, at(20), 0),
			download(c, contract.DownloadFailed, 4, at(21), 100),
		}
		// The request's events and the first download in one batch, as the
		// stream delivers them after an outage; the rest later.
		st, err := s.Apply(t.Context(), auditstore.Batch{Events: evs, Downloads: downloads[:2]})
		if err != nil {
			t.Fatal(err)
		}
		if st.Events != 6 || st.Rows != 1 {
			t.Errorf("first batch stats = %+v, want 6 events, 1 row", st)
		}
		if _, err := s.Apply(t.Context(), auditstore.Batch{Downloads: downloads[2:]}); err != nil {
			t.Fatal(err)
		}
		want := succeededRecord(c)
		want.Outcome, want.Bytes, want.Files, want.Adler32 = contract.OutcomeLinkIssued, 0, 0, ""
		want.Downloads = 1
		if diff := cmp.Diff(get(t, s, c.ID), want); diff != "" {
			t.Errorf("record (-got +want):\n%s", diff)
		}
		_, gotEvents, err := s.Get(t.Context(), c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(gotEvents, evs); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
		gotDownloads, err := s.Downloads(t.Context(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(gotDownloads, downloads); diff != "" {
			t.Errorf("downloads (-got +want):\n%s", diff)
		}

		// Replayed, in one batch and out of order: nothing changes.
		before := dumpStore(t, s)
		st, err = s.Apply(t.Context(), auditstore.Batch{Events: evs, Downloads: []contract.DownloadEvent{downloads[3], downloads[1], downloads[0], downloads[2]}})
		if err != nil {
			t.Fatal(err)
		}
		if st.Events != 0 || st.Duplicates != 8 || st.Rows != 0 {
			t.Errorf("replay stats = %+v, want 8 duplicates and nothing written", st)
		}
		if diff := cmp.Diff(dumpStore(t, s), before); diff != "" {
			t.Errorf("replay changed the store (-after +before):\n%s", diff)
		}
	})
}

// A download of a request the audit has no row of (purged) is kept in the
// history but makes no request.
func TestDownloadOfUnknownRequest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("gone")
		dl := download(c, contract.DownloadCompleted, 2, at(1), 10)
		st, err := s.Apply(t.Context(), auditstore.Batch{Downloads: []contract.DownloadEvent{dl}})
		if err != nil {
			t.Fatal(err)
		}
		if st.Events != 1 || st.Rows != 0 {
			t.Errorf("stats = %+v, want 1 event, no row", st)
		}
		if _, _, err := s.Get(t.Context(), c.ID, false); !errors.Is(err, auditstore.ErrNotFound) {
			t.Errorf("Get = %v, want ErrNotFound", err)
		}
	})
}

func TestApplyRejectsUnstorableDownloads(t *testing.T) {
	c := cmd("req-1")
	good := download(c, contract.DownloadStarted, 1, at(1), 0)
	tests := []struct {
		name   string
		change func(*contract.DownloadEvent)
	}{
		{"no id", func(d *contract.DownloadEvent) { d.ID = "" }},
		{"no time", func(d *contract.DownloadEvent) { d.Time = time.Time{} }},
		{"before 1970", func(d *contract.DownloadEvent) { d.Time = time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year 10000", func(d *contract.DownloadEvent) { d.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"bad request id", func(d *contract.DownloadEvent) { d.RequestID = "a.b" }},
		{"request event type", func(d *contract.DownloadEvent) { d.Type = "succeeded" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := good
			tt.change(&bad)
			if err := auditstore.ValidateDownload(bad); !errors.Is(err, auditstore.ErrInvalidEvent) {
				t.Errorf("ValidateDownload = %v, want ErrInvalidEvent", err)
			}
		})
	}
	// And a request event posing as a download on a request's subject.
	ev := event(c, contract.EventQueued, 1, at(0))
	ev.Type = contract.EventType(contract.DownloadCompleted)
	if err := auditstore.ValidateEvent(ev); !errors.Is(err, auditstore.ErrInvalidEvent) {
		t.Errorf("ValidateEvent(download type) = %v, want ErrInvalidEvent", err)
	}
}
