package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

// jobAnswer is POST /api/v1/jobs's answer.
type jobAnswer struct {
	JobID     string `json:"job_id"`
	StatusURL string `json:"status_url"`
	Items     []struct {
		ID     string          `json:"id"`
		Status contract.Status `json:"status"`
		Error  *contract.Error `json:"error"`
	} `json:"items"`
}

type jobView struct {
	JobID  string         `json:"job_id"`
	Status string         `json:"status"`
	Counts map[string]int `json:"counts"`
	Items  []struct {
		ID     string          `json:"id"`
		JobID  string          `json:"job_id"`
		Status contract.Status `json:"status"`
	} `json:"items"`
}

// finishedJob polls the job at statusURL until it no longer runs.
func finishedJob(t *testing.T, e *env, statusURL string) jobView {
	t.Helper()
	var view jobView
	testenv.Eventually(t, 10*time.Second, "the job to finish", func() bool {
		view = decode[jobView](t, e.do("GET", statusURL, ""))
		return view.Status != "running"
	})
	return view
}

// stagerFake succeeds every command except those whose source contains
// "missing".
func stagerFake(cmd contract.Command) contract.Event {
	if strings.Contains(cmd.LocalPathOnStorage, "missing") {
		return contract.Event{Type: contract.EventFailed, Error: contract.Errorf(contract.CodeSourceNotFound, "no such file")}
	}
	return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged}
}

func TestJobWithAFailingItemIsPartial(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	e.startWorker(stagerFake)
	body := `{"items":[` + item("alice", "a/ok.fits") + `,` + item("alice", "a/missing.fits") + `,` + item("Not A User", "a/x") + `]}`
	r := e.do("POST", "/api/v1/jobs", body)
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d: %s", r.status, r.body)
	}
	job := decode[jobAnswer](t, r)
	if job.JobID == "" || r.header.Get("Location") != "/api/v1/jobs/"+job.JobID {
		t.Fatalf("job id %q, Location %q", job.JobID, r.header.Get("Location"))
	}
	var statuses []contract.Status
	for _, it := range job.Items {
		statuses = append(statuses, it.Status)
	}
	if diff := cmp.Diff(statuses, []contract.Status{"queued", "queued", "rejected"}); diff != "" {
		t.Errorf("item statuses (-got +want):\n%s", diff)
	}
	if ierr := job.Items[2].Error; ierr == nil || ierr.Code != contract.CodeInvalidUsername {
		t.Errorf("rejected item error = %+v", ierr)
	}

	view := finishedJob(t, e, job.StatusURL)
	want := jobView{JobID: job.JobID, Status: "partial", Counts: map[string]int{"succeeded": 1, "failed": 1, "rejected": 1}}
	for _, it := range job.Items {
		want.Items = append(want.Items, struct {
			ID     string          `json:"id"`
			JobID  string          `json:"job_id"`
			Status contract.Status `json:"status"`
		}{it.ID, job.JobID, ""})
	}
	want.Items[0].Status, want.Items[1].Status, want.Items[2].Status = "succeeded", "failed", "rejected"
	if diff := cmp.Diff(view, want); diff != "" {
		t.Errorf("job (-got +want):\n%s", diff)
	}
}

func TestJobStates(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	e.startWorker(stagerFake)
	tests := []struct {
		name  string
		items []string
		want  string
	}{
		{"all succeed", []string{item("alice", "a/1"), item("bob", "a/2")}, "completed"},
		{"none succeeds", []string{item("alice", "a/missing"), item("alice", "../escape")}, "failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/jobs", `{"items":[`+strings.Join(tt.items, ",")+`]}`)
			if r.status != http.StatusAccepted {
				t.Fatalf("status = %d: %s", r.status, r.body)
			}
			job := decode[jobAnswer](t, r)
			view := finishedJob(t, e, job.StatusURL)
			if view.Status != tt.want || len(view.Items) != len(tt.items) {
				t.Errorf("job = %+v, want %s with %d items", view, tt.want, len(tt.items))
			}
		})
	}
}

func TestJobFromTheAudit(t *testing.T) {
	// Events aged out of the stream: the audit's records are all there is.
	e := newEnv(t, gateway.Config{})
	now := time.Now().UTC()
	answer(e, contract.SubjectAuditList, func(q contract.AuditListRequest) contract.AuditListReply {
		if q.JobID != "old-job" {
			return contract.AuditListReply{Items: []contract.Record{}}
		}
		return contract.AuditListReply{Items: []contract.Record{
			{ID: "r1", JobID: "old-job", Method: contract.MethodLocalCopy, Username: "alice", Status: contract.StatusSucceeded, CreatedAt: now, UpdatedAt: now},
			{ID: "r2", JobID: "old-job", Method: contract.MethodLocalCopy, Username: "alice", Status: contract.StatusFailed, ErrorCode: contract.CodeIOError, ErrorReason: "disk", CreatedAt: now, UpdatedAt: now},
		}}
	})
	view := decode[jobView](t, e.do("GET", "/api/v1/jobs/old-job", ""))
	if view.Status != "partial" || len(view.Items) != 2 {
		t.Errorf("job = %+v, want partial with 2 items", view)
	}
	if r := e.do("GET", "/api/v1/jobs/no-such-job", ""); r.status != http.StatusNotFound {
		t.Errorf("unknown job: %d %s", r.status, r.body)
	}
}

func TestJobBadInput(t *testing.T) {
	e := newEnv(t, gateway.Config{JobMaxItems: 2})
	tests := []struct {
		name, body string
		want       int
		code       contract.Code
	}{
		{"no items", `{"items":[]}`, 422, contract.CodeMissingField},
		{"too many", `{"items":[` + item("a", "x") + `,` + item("a", "y") + `,` + item("a", "z") + `]}`, 422, contract.CodeMalformed},
		{"not json", `{"items":`, 422, contract.CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/jobs", tt.body)
			if r.status != tt.want || r.json(t)["code"] != string(tt.code) {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tt.want, tt.code)
			}
		})
	}
	if n := len(e.commands()); n != 0 {
		t.Errorf("%d commands published for refused jobs", n)
	}
	if r := e.do("GET", "/api/v1/jobs/bad.id", ""); r.status != 400 {
		t.Errorf("bad job id: %d %s", r.status, r.body)
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, gateway.Config{AuthMode: "tokens", AuthTokensFile: tokensFile(t, "alice-secret-token alice\nbob-secret-token bob\n")})
	alice := []string{"Authorization", "Bearer alice-secret-token", "Idempotency-Key", "key-1"}

	first := e.do("POST", "/api/v1/stagings", submitBody("alice"), alice...)
	again := e.do("POST", "/api/v1/stagings", submitBody("alice"), alice...)
	if first.status != 202 || again.status != 202 {
		t.Fatalf("statuses %d %d: %s %s", first.status, again.status, first.body, again.body)
	}
	if diff := cmp.Diff(again.json(t), first.json(t)); diff != "" {
		t.Errorf("the repeat answered differently (-again +first):\n%s", diff)
	}
	if again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the repeat is not marked replayed: %v", again.header)
	}
	if cmds := e.commands(); len(cmds) != 1 {
		t.Errorf("%d commands on the stream, want 1", len(cmds))
	}

	reused := e.do("POST", "/api/v1/stagings", `{"method":"local_copy","username":"alice","local_path_on_storage":"/mnt/a/other.fits","relative_path":"f.fits"}`, alice...)
	if reused.status != 422 || reused.json(t)["code"] != string(contract.CodeIdempotencyKeyReused) {
		t.Errorf("key reused with another body: %d %s", reused.status, reused.body)
	}

	// The same key of another caller is another key.
	bob := e.do("POST", "/api/v1/stagings", submitBody("bob"), "Authorization", "Bearer bob-secret-token", "Idempotency-Key", "key-1")
	if bob.status != 202 || bob.json(t)["id"] == first.json(t)["id"] {
		t.Errorf("bob's key-1: %d %s", bob.status, bob.body)
	}

	// Jobs: same key, same job and item ids, nothing published twice.
	jobBody := `{"items":[` + submitBody("alice") + `,` + item("alice", "b/2") + `]}`
	jobHdr := []string{"Authorization", "Bearer alice-secret-token", "Idempotency-Key", "job-key-1"}
	j1 := decode[jobAnswer](t, e.do("POST", "/api/v1/jobs", jobBody, jobHdr...))
	j2 := decode[jobAnswer](t, e.do("POST", "/api/v1/jobs", jobBody, jobHdr...))
	if diff := cmp.Diff(j2, j1); diff != "" {
		t.Errorf("the repeated job answered differently (-again +first):\n%s", diff)
	}
	if cmds := e.commands(); len(cmds) != 4 {
		t.Errorf("%d commands on the stream, want 4", len(cmds))
	}
	if r := e.do("POST", "/api/v1/jobs", `{"items":[`+submitBody("alice")+`]}`, jobHdr...); r.status != 422 {
		t.Errorf("job key reused with another body: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/api/v1/stagings", submitBody("alice"), "Authorization", "Bearer alice-secret-token", "Idempotency-Key", strings.Repeat("k", 256)); r.status != 422 {
		t.Errorf("too long a key: %d %s", r.status, r.body)
	}
}

// A job knows its size from its items: one whose submission was cut short
// (an item never published) reports incomplete with the counts, and the
// same POST repeated with the same Idempotency-Key completes it.
func TestJobCutShortIsIncomplete(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	body := `{"items":[` + item("alice", "a/1") + `,` + item("alice", "a/2") + `,` + item("alice", "a/3") + `]}`
	hdr := []string{"Idempotency-Key", "cut-short-1"}
	r := e.do("POST", "/api/v1/jobs", body, hdr...)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST job: %d %s", r.status, r.body)
	}
	job := decode[jobAnswer](t, r)
	for _, cmd := range e.commands() {
		if cmd.JobSize != 3 {
			t.Errorf("command %s carries job_size %d, want 3", cmd.ID, cmd.JobSize)
		}
	}
	// As if the gateway had died before publishing the first item: its
	// events are gone.
	if err := e.stream(t.Context(), contract.StreamEvents).Purge(t.Context(), jetstream.WithPurgeSubject(contract.EventSubject(job.Items[0].ID))); err != nil {
		t.Fatal(err)
	}
	view := decode[map[string]any](t, e.do("GET", job.StatusURL, ""))
	if view["status"] != "incomplete" || view["size"] != float64(3) || view["missing"] != float64(1) || len(view["items"].([]any)) != 2 {
		t.Errorf("job cut short: %v, want incomplete, size 3, 1 missing, 2 items", view)
	}
	if r := e.do("POST", "/api/v1/jobs", body, hdr...); r.status != http.StatusAccepted {
		t.Fatalf("POST job again: %d %s", r.status, r.body)
	}
	view = decode[map[string]any](t, e.do("GET", job.StatusURL, ""))
	if view["status"] == "incomplete" || view["missing"] != nil || len(view["items"].([]any)) != 3 {
		t.Errorf("job repeated: %v, want 3 items and none missing", view)
	}
}
