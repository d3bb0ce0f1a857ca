package auditstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

func invalid(seq uint64, payload string, code contract.Code) auditstore.Invalid {
	return auditstore.Invalid{
		StreamSeq: seq, Subject: contract.EventSubject(fmt.Sprintf("bad-%d", seq)), Payload: []byte(payload),
		Code: code, Reason: fmt.Sprintf("reason %d", seq), PublishedAt: at(int(seq)), ReceivedAt: at(int(seq) + 1),
	}
}

func listInvalid(t *testing.T, s *auditstore.Store, req contract.AuditInvalidRequest) ([]contract.InvalidEvent, string) {
	t.Helper()
	items, next, err := s.ListInvalid(t.Context(), req)
	if err != nil {
		t.Fatalf("ListInvalid: %v", err)
	}
	return items, next
}

// Invalid messages are stored apart: they create no request and touch no
// record, are stored once however often they come, and read back as
// received (the first 64 KiB).
func TestInvalidEventsAreKeptApart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		good := event(cmd("req-1"), contract.EventQueued, 1, at(0))
		huge := `{"type":"weird","pad":"` + strings.Repeat("x", 70000) + `"}`
		batch := auditstore.Batch{
			Events: []contract.Event{good},
			Invalid: []auditstore.Invalid{
				invalid(7, `{"type":"succeeded","request_id":"bad-7","local_path_on_storage":"/etc/shadow"}`, contract.CodeNoStartedEvent),
				invalid(8, "not json \xff\x00 at all", contract.CodeMalformed),
				invalid(9, huge, contract.CodeUnknownEventType),
			},
		}
		batch.Invalid[1].Subject = "staging.events.\xff"
		st, err := s.Apply(t.Context(), batch)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st, auditstore.Stats{Events: 1, Rows: 1, Invalid: []int{0, 1, 2}}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
		records, _, err := s.List(t.Context(), contract.AuditListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(records) != 1 || records[0].ID != "req-1" {
			t.Errorf("records = %+v, want only req-1", records)
		}
		for _, id := range []string{"bad-7", "bad-8", "bad-9"} {
			if _, _, err := s.Get(t.Context(), id, true); !errors.Is(err, auditstore.ErrNotFound) {
				t.Errorf("Get(%s) = %v, want ErrNotFound", id, err)
			}
		}
		items, next := listInvalid(t, s, contract.AuditInvalidRequest{})
		if len(items) != 3 || next != "" {
			t.Fatalf("%d invalid events, next %q; want 3 on one page", len(items), next)
		}
		newest, middle, oldest := items[0], items[1], items[2]
		if newest.StreamSeq != 9 || middle.StreamSeq != 8 || oldest.StreamSeq != 7 || !(newest.ID > middle.ID && middle.ID > oldest.ID) {
			t.Errorf("order = %d, %d, %d; want newest first", newest.StreamSeq, middle.StreamSeq, oldest.StreamSeq)
		}
		want := contract.InvalidEvent{
			ID: oldest.ID, Subject: contract.EventSubject("bad-7"), StreamSeq: 7, Code: contract.CodeNoStartedEvent, Reason: "reason 7",
			Size: int64(len(batch.Invalid[0].Payload)), Payload: string(batch.Invalid[0].Payload), PublishedAt: at(7), ReceivedAt: at(8),
		}
		if diff := cmp.Diff(oldest, want); diff != "" {
			t.Errorf("invalid event (-got +want):\n%s", diff)
		}
		if middle.Payload != "not json \uFFFD\x00 at all" || middle.Subject != "staging.events.\uFFFD" {
			t.Errorf("payload %q on %q; want the message with its byte that is not UTF-8 replaced", middle.Payload, middle.Subject)
		}
		if len(newest.Payload) != auditstore.MaxInvalidPayload || !newest.Truncated || newest.Size != int64(len(huge)) || !strings.HasPrefix(huge, newest.Payload) {
			t.Errorf("payload of %d bytes, truncated %v, size %d; want the first %d of %d bytes", len(newest.Payload), newest.Truncated, newest.Size, auditstore.MaxInvalidPayload, len(huge))
		}

		// The same messages again (a redelivery, a replay) change nothing.
		st, err = s.Apply(t.Context(), batch)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st, auditstore.Stats{Duplicates: 4}); diff != "" {
			t.Errorf("stats of the batch again (-got +want):\n%s", diff)
		}
		if again, _ := listInvalid(t, s, contract.AuditInvalidRequest{}); len(again) != 3 {
			t.Errorf("%d invalid events after the batch came again, want 3", len(again))
		}
		// Another message at a sequence seen before (a stream made again)
		// is another message.
		other := invalid(7, `{"other":true}`, contract.CodeMalformed)
		if st, err := s.Apply(t.Context(), auditstore.Batch{Invalid: []auditstore.Invalid{other}}); err != nil || len(st.Invalid) != 1 {
			t.Errorf("another message at sequence 7: stats %+v, error %v; want it stored", st, err)
		}
	})
}

func TestInvalidEventsPage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		var batch auditstore.Batch
		for i := range 5 {
			batch.Invalid = append(batch.Invalid, invalid(uint64(i+1), fmt.Sprintf(`{"n":%d}`, i), contract.CodeMalformed))
		}
		if _, err := s.Apply(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		req := contract.AuditInvalidRequest{Limit: 2}
		for pages := 0; ; pages++ {
			if pages > 3 {
				t.Fatal("paging does not end")
			}
			items, next := listInvalid(t, s, req)
			for _, it := range items {
				seqs = append(seqs, it.StreamSeq)
			}
			if next == "" {
				break
			}
			req.Cursor = next
		}
		if diff := cmp.Diff(seqs, []uint64{5, 4, 3, 2, 1}); diff != "" {
			t.Errorf("pages (-got +want):\n%s", diff)
		}
		for _, bad := range []contract.AuditInvalidRequest{{Limit: -1}, {Cursor: "!!"}, {Cursor: "eA"}} {
			if _, _, err := s.ListInvalid(t.Context(), bad); !errors.Is(err, auditstore.ErrInvalidQuery) {
				t.Errorf("ListInvalid(%+v) = %v, want ErrInvalidQuery", bad, err)
			}
		}
		n, err := s.PurgeInvalid(t.Context(), at(4))
		if err != nil || n != 2 {
			t.Fatalf("PurgeInvalid = %d, %v; want the 2 received before the cutoff", n, err)
		}
		if items, _ := listInvalid(t, s, contract.AuditInvalidRequest{}); len(items) != 3 || items[2].StreamSeq != 3 {
			t.Errorf("after the purge: %+v, want sequences 5, 4, 3", items)
		}
	})
}
