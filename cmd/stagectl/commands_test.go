package main

// The end-to-end tests of the commands other than watch and download,
// each against the all-in-one started once for the package.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMethods(t *testing.T) {
	r := mustRun(t, exitOK, "methods")
	if got := strings.Fields(r.stdout); !slices.Contains(got, "local_copy") || !slices.Contains(got, "direct_download") {
		t.Errorf("methods printed %q, want local_copy and direct_download among them", got)
	}
	var m struct {
		Methods []string `json:"allowed_methods"`
	}
	pureJSON(t, mustRun(t, exitOK, "methods", "--json").stdout, &m)
	if !slices.Contains(m.Methods, "local_copy") {
		t.Errorf("methods --json = %v, want local_copy among them", m.Methods)
	}
}

func TestStageWaitCopiesAndStatusShowsIt(t *testing.T) {
	carol := newUser("carol")
	data := patterned(200 << 10)
	src := sourceFile(t, "a.bin", data)

	r := mustRun(t, exitOK, "stage", "local_copy", src, "wait/a.bin", "--user", carol, "--wait")
	if !strings.Contains(r.stdout, "succeeded (staged)") {
		t.Errorf("stage --wait printed no success line:\n%s", r)
	}
	got, err := os.ReadFile(staged(carol, "wait/a.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("staged copy differs from the source (err %v)", err)
	}

	// Without --wait only the id is printed: scripts capture it.
	r = mustRun(t, exitOK, "stage", "local_copy", src, "wait/b.bin", "--user", carol)
	id := strings.TrimSpace(r.stdout)
	if strings.ContainsAny(id, " \n") || len(id) < 32 {
		t.Fatalf("stage printed %q, want just an id", r.stdout)
	}
	mustRun(t, exitOK, "watch", id)
	r = mustRun(t, exitOK, "status", id)
	for _, want := range []string{"id:", id, "succeeded (staged)", "local_copy", carol, "wait/b.bin", "200.0 KiB (204800)", "files:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	var states []staging
	pureJSON(t, mustRun(t, exitOK, "status", "--json", id).stdout, &states)
	if len(states) != 1 || states[0].Status != "succeeded" || states[0].Bytes != int64(len(data)) || states[0].Files != 1 {
		t.Errorf("status --json = %+v, want one succeeded state of %d bytes, 1 file", states, len(data))
	}
}

// TestExitCodes checks the documented exit codes and that errors show as
// their code, never as JSON or a Go error chain.
func TestExitCodes(t *testing.T) {
	dave := newUser("dave")
	src := sourceFile(t, "x.txt", []byte("x\n"))
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"code":"unavailable","detail":"the message broker is unreachable; try again later"}`)
	}))
	defer unavailable.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	for _, tc := range []struct {
		name       string
		env        map[string]string
		args       []string
		want       int
		wantStderr string
	}{
		{"succeeded", nil, []string{"stage", "local_copy", src, "codes/x.txt", "--user", dave, "--wait"}, exitOK, ""},
		{"failed in the worker", nil, []string{"stage", "local_copy", "codes/absent.txt", "codes/y.txt", "--user", dave, "--wait"}, exitFailed, "source_not_found"},
		{"rejected at the door", nil, []string{"stage", "teleport", src, "codes/z.txt", "--user", dave}, exitFailed, "invalid_method: "},
		{"bad token", map[string]string{"STAGING_TOKEN": "nobody"}, []string{"list"}, exitFailed, "unauthorized: "},
		{"another user's data", map[string]string{"STAGING_TOKEN": aliceToken}, []string{"stage", "local_copy", src, "codes/w.txt", "--user", dave}, exitFailed, "forbidden: "},
		{"unknown request", nil, []string{"status", "00000000-0000-4000-8000-000000000000"}, exitFailed, "not_found: "},
		{"missing --user", nil, []string{"stage", "local_copy", src, "codes/v.txt"}, exitUsage, "--user is required"},
		{"too few arguments", nil, []string{"stage", "local_copy", src}, exitUsage, "METHOD SOURCE TARGET"},
		{"--did and a source", nil, []string{"stage", "local_copy", src, "codes/d.txt", "--did", "testsrc:f", "--user", dave}, exitUsage, "give SOURCE or --did, not both"},
		{"--did without a target", nil, []string{"stage", "local_copy", "--did", "testsrc:f", "--user", dave}, exitUsage, "stage --did needs METHOD TARGET"},
		{"--did and --from", nil, []string{"stage", "--from", "items.csv", "--did", "testsrc:f", "--user", dave}, exitUsage, "--did names the source of one request"},
		{"--did and --adler32", nil, []string{"stage", "local_copy", "codes/d.txt", "--did", "testsrc:f", "--adler32", "0a1b2c3d", "--user", dave}, exitUsage, "--adler32 does not go with --did"},
		{"not a did", nil, []string{"stage", "local_copy", "codes/d.txt", "--did", "no-scope", "--user", dave}, exitFailed, "invalid_did: "},
		{"unknown flag", nil, []string{"status", "--colour", "x"}, exitUsage, "unknown flag"},
		{"unknown command", nil, []string{"stagex"}, exitUsage, "unknown command"},
		{"bad server URL", map[string]string{"STAGING_URL": "localhost:8080"}, []string{"methods"}, exitUsage, "not an http:// or https:// URL"},
		{"unreachable", map[string]string{"STAGING_URL": dead.URL}, []string{"methods"}, exitUnreachable, "cannot reach the staging server"},
		{"5xx", map[string]string{"STAGING_URL": unavailable.URL}, []string{"status", "x"}, exitUnreachable, "unavailable: the message broker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := stagectl(t, tc.env, tc.args...)
			if r.code != tc.want {
				t.Fatalf("%s\nwant exit %d", r, tc.want)
			}
			if !strings.Contains(r.stdout+r.stderr, tc.wantStderr) {
				t.Errorf("%s\nwant %q in the output", r, tc.wantStderr)
			}
			if strings.Contains(r.stderr, "{") || strings.Contains(r.stderr, "dial tcp") {
				t.Errorf("error shown as raw JSON or a Go error chain:\n%s", r.stderr)
			}
		})
	}

	t.Run("worst of several", func(t *testing.T) {
		ok := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", src, "codes/s1.txt", "--user", dave).stdout)
		bad := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", "codes/none", "codes/s2.txt", "--user", dave).stdout)
		if r := stagectl(t, nil, "watch", ok, bad); r.code != exitFailed {
			t.Fatalf("watch of a success and a failure: %s\nwant exit 1", r)
		}
		if r := stagectl(t, nil, "status", ok, "00000000-0000-4000-8000-000000000001"); r.code != exitFailed {
			t.Errorf("status of a known and an unknown id: %s\nwant exit 1", r)
		}
	})
}

// TestJSONOutputIsPure: with --json, stdout is one JSON document and
// nothing else, for results and errors alike.
func TestJSONOutputIsPure(t *testing.T) {
	erin := newUser("erin")
	src := sourceFile(t, "j.txt", []byte("json\n"))
	var sub submitted
	pureJSON(t, mustRun(t, exitOK, "stage", "local_copy", src, "json/j.txt", "--user", erin, "--json").stdout, &sub)
	if sub.ID == "" || sub.Status != "queued" {
		t.Fatalf("stage --json = %+v, want an id, queued", sub)
	}
	dl := strings.TrimSpace(mustRun(t, exitOK, "stage", "direct_download", src, "json/d", "--user", erin).stdout)
	batch := filepath.Join(t.TempDir(), "b.csv")
	os.WriteFile(batch, []byte("local_copy,"+src+",json/b1\nteleport,"+src+",json/b2\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"watch", sub.ID, dl}, exitOK},
		{[]string{"stage", "local_copy", src, "json/k.txt", "--user", erin, "--wait"}, exitOK},
		{[]string{"status", sub.ID}, exitOK},
		{[]string{"list", "--user", erin}, exitOK},
		{[]string{"methods"}, exitOK},
		{[]string{"download", dl, "-o", t.TempDir()}, exitOK},
		{[]string{"stage", "teleport", src, "json/l.txt", "--user", erin}, exitFailed},
		{[]string{"cancel", sub.ID}, exitFailed},
		{[]string{"stage", "--from", batch, "--user", erin}, exitFailed},
		{[]string{"stage", "--from", batch, "--user", erin, "--wait"}, exitFailed},
		{[]string{"stage", "local_copy", "json/absent", "json/m.txt", "--user", erin, "--wait"}, exitFailed},
	} {
		t.Run(strings.Join(tc.args[:min(2, len(tc.args))], " "), func(t *testing.T) {
			r := stagectl(t, nil, append(tc.args, "--json")...)
			if r.code != tc.want {
				t.Fatalf("%s\nwant exit %d", r, tc.want)
			}
			var v any
			pureJSON(t, r.stdout, &v)
			if tc.want != exitOK && !strings.Contains(r.stdout, `"code"`) {
				t.Errorf("failure's JSON carries no code:\n%s", r.stdout)
			}
		})
	}
}

func TestStageBatchFromFile(t *testing.T) {
	frank := newUser("frank")
	a := sourceFile(t, "a.txt", []byte("first\n"))
	b := sourceFile(t, "b.txt", []byte("second\n"))
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "items.csv")
	os.WriteFile(csvFile, []byte("# a batch\nmethod,source,target,user\nlocal_copy,"+a+",batch/a.txt,"+frank+"\nlocal_copy,"+b+",batch/b.txt,\nteleport,"+b+",batch/c.txt,"+frank+"\n"), 0o644)

	r := stagectl(t, nil, "stage", "--from", csvFile, "--user", frank)
	if r.code != exitFailed || !strings.Contains(r.stderr, "invalid_method") {
		t.Fatalf("a batch with a rejected item: %s\nwant exit 1 naming invalid_method", r)
	}
	jobID := strings.TrimSpace(r.stdout)
	// The same file again is the same job: the Idempotency-Key is the file's.
	if again := stagectl(t, nil, "stage", "--from", csvFile, "--user", frank); strings.TrimSpace(again.stdout) != jobID {
		t.Fatalf("the same file submitted twice gave job %q then %q", jobID, again.stdout)
	}
	if r := stagectl(t, nil, "watch", "--job", jobID); r.code != exitFailed || !strings.Contains(r.stdout, "succeeded (staged)") {
		t.Fatalf("watch --job: %s\nwant exit 1 (one item rejected) and the successes shown", r)
	}
	for target, want := range map[string]string{"batch/a.txt": "first\n", "batch/b.txt": "second\n"} {
		if got, err := os.ReadFile(staged(frank, target)); err != nil || string(got) != want {
			t.Errorf("%s = %q (err %v), want %q", target, got, err, want)
		}
	}
	r = stagectl(t, nil, "job", jobID)
	for _, want := range []string{"job " + jobID, "2 succeeded", "1 rejected", "rejected (invalid_method)", "batch/a.txt"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("job lacks %q:\n%s", want, r)
		}
	}
	var j job
	pureJSON(t, stagectl(t, nil, "job", jobID, "--json").stdout, &j)
	if j.JobID != jobID || len(j.Items) != 3 {
		t.Errorf("job --json = %+v, want job %s with 3 items", j, jobID)
	}

	jsonl := filepath.Join(dir, "items.jsonl")
	os.WriteFile(jsonl, []byte(`{"method":"local_copy","username":"`+frank+`","local_path_on_storage":"`+a+`","relative_path":"batch2/a.txt"}`+"\n"), 0o644)
	mustRun(t, exitOK, "stage", "--from", jsonl, "--wait")
	if _, err := os.Stat(staged(frank, "batch2/a.txt")); err != nil {
		t.Errorf("JSON-lines batch not staged: %v", err)
	}

	// From stdin, with a header naming the columns in another order.
	r = stagectlIn(t, "target,source,method\nbatch3/a.txt,"+a+",local_copy\n", nil, "stage", "--from", "-", "--user", frank, "--wait")
	if r.code != exitOK {
		t.Fatalf("a batch on stdin: %s", r)
	}
	if _, err := os.Stat(staged(frank, "batch3/a.txt")); err != nil {
		t.Errorf("stdin batch not staged: %v", err)
	}

	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"method":"local_copy","colour":"blue"}`+"\n"), 0o644)
	if r := stagectl(t, nil, "stage", "--from", bad); r.code != exitUsage || !strings.Contains(r.stderr, "line 1") {
		t.Errorf("a malformed batch file: %s\nwant exit 2 naming line 1", r)
	}
}

// TestStageByDID: --did sends the DID instead of a source path, and the
// request's state shows it. The all-in-one has no Rucio, so its stager
// refuses the request with method_not_allowed.
func TestStageByDID(t *testing.T) {
	heidi := newUser("heidi")
	r := stagectl(t, nil, "stage", "local_copy", "did/ds1", "--did", "testsrc:ds1", "--user", heidi, "--wait")
	if r.code != exitFailed || !strings.Contains(r.stdout+r.stderr, "method_not_allowed") || !strings.Contains(r.stdout+r.stderr, "staging by DID is not set up") {
		t.Fatalf("stage --did on a server without Rucio: %s\nwant exit 1 with method_not_allowed", r)
	}

	id := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", "did/ds2", "--did", "testsrc:ds2", "--user", heidi).stdout)
	var states []staging
	eventually(t, 10*time.Second, "the request to end", func() bool {
		states = nil
		r := stagectl(t, nil, "status", "--json", id)
		pureJSON(t, r.stdout, &states)
		return len(states) == 1 && states[0].finished()
	})
	if s := states[0]; s.DID != "testsrc:ds2" || s.LocalPathOnStorage != "" || s.RelativePath != "did/ds2" || s.Error == nil || s.Error.Code != "method_not_allowed" {
		t.Errorf("state = %+v (error %+v), want did testsrc:ds2, no source path, method_not_allowed", s, s.Error)
	}
	if r := mustRun(t, exitFailed, "status", id); !strings.Contains(r.stdout, "testsrc:ds2") {
		t.Errorf("status does not show the did:\n%s", r)
	}
	// The history names it as the request's source.
	eventually(t, 10*time.Second, "list to show the did as the source", func() bool {
		r := stagectl(t, nil, "list", "--user", heidi)
		return r.code == exitOK && strings.Contains(r.stdout, "testsrc:ds2")
	})

	// In a batch file: a did field of a JSON line, a did column of a CSV.
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "dids.jsonl")
	os.WriteFile(jsonl, []byte(`{"method":"local_copy","did":"testsrc:ds3","relative_path":"did/ds3"}`+"\n"), 0o644)
	csvFile := filepath.Join(dir, "dids.csv")
	os.WriteFile(csvFile, []byte("method,did,target\nlocal_copy,testsrc:ds4,did/ds4\n"), 0o644)
	for file, did := range map[string]string{jsonl: "testsrc:ds3", csvFile: "testsrc:ds4"} {
		jobID := strings.TrimSpace(mustRun(t, exitOK, "stage", "--from", file, "--user", heidi).stdout)
		if r := stagectl(t, nil, "watch", "--job", jobID); r.code != exitFailed || !strings.Contains(r.stdout+r.stderr, "method_not_allowed") {
			t.Fatalf("a batch by DID on a server without Rucio: %s\nwant exit 1 with method_not_allowed", r)
		}
		var j job
		pureJSON(t, stagectl(t, nil, "job", jobID, "--json").stdout, &j)
		if len(j.Items) != 1 || j.Items[0].DID != did || j.Items[0].Error == nil || j.Items[0].Error.Code != "method_not_allowed" {
			t.Errorf("job of %s = %+v, want one item by %s refused with method_not_allowed", filepath.Base(file), j, did)
		}
	}
}

// TestListPagesThroughTheCursor forces pages of two through a proxy, so
// listing five takes three pages.
func TestListPagesThroughTheCursor(t *testing.T) {
	grace := newUser("grace")
	src := sourceFile(t, "l.txt", []byte("list\n"))
	for _, target := range []string{"l1", "l2", "l3", "l4", "l5", "l6"} {
		mustRun(t, exitOK, "stage", "local_copy", src, "list/"+target, "--user", grace, "--wait")
	}
	// The audit records asynchronously: wait until it has all six.
	eventually(t, 10*time.Second, "six records in the audit", func() bool {
		var records []record
		r := stagectl(t, nil, "list", "--user", grace, "--json")
		return json.Unmarshal([]byte(r.stdout), &records) == nil && len(records) == 6
	})
	upstream, _ := url.Parse(server.url)
	var mu sync.Mutex
	var cursors []string
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(upstream)
		q := pr.Out.URL.Query()
		mu.Lock()
		cursors = append(cursors, q.Get("cursor"))
		mu.Unlock()
		q.Set("limit", "2")
		pr.Out.URL.RawQuery = q.Encode()
	}}
	front := httptest.NewServer(proxy)
	defer front.Close()

	r := stagectl(t, map[string]string{"STAGING_URL": front.URL}, "list", "--user", grace, "--limit", "5", "--json")
	var records []record
	pureJSON(t, r.stdout, &records)
	if len(records) != 5 {
		t.Fatalf("list --limit 5 gave %d records", len(records))
	}
	if len(cursors) != 3 || cursors[0] != "" || cursors[1] == "" || cursors[2] == "" {
		t.Errorf("pages asked with cursors %q, want 3 pages: none, then two cursors", cursors)
	}
	seen := map[string]bool{}
	for _, rec := range records {
		if seen[rec.ID] || rec.Username != grace {
			t.Errorf("record %s repeated or not grace's (%s)", rec.ID, rec.Username)
		}
		seen[rec.ID] = true
	}

	r = mustRun(t, exitOK, "list", "--user", grace, "--status", "succeeded", "--method", "local_copy", "--since", "1h")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "CREATED") || !strings.Contains(lines[1], "succeeded (staged)") {
		t.Errorf("list table:\n%s\nwant a header and 6 rows", r.stdout)
	}
	if r := stagectl(t, nil, "list", "--status", "lost"); r.code != exitFailed || !strings.Contains(r.stderr, "malformed") {
		t.Errorf("list --status lost: %s\nwant exit 1, malformed", r)
	}
}

func TestCancel(t *testing.T) {
	heidi := newUser("heidi")
	src := sourceFile(t, "c.txt", []byte("cancel\n"))
	id := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", src, "cancel/c.txt", "--user", heidi).stdout)
	mustRun(t, exitOK, "watch", id)

	t.Run("the gateway", func(t *testing.T) {
		if r := stagectl(t, nil, "cancel", id); r.code != exitFailed || !strings.Contains(r.stderr, "already_finished") {
			t.Errorf("cancel of a finished request: %s\nwant exit 1, already_finished", r)
		}
		if r := stagectl(t, nil, "cancel", "--job", id); r.code != exitFailed || !strings.Contains(r.stderr, "not_found") {
			t.Errorf("cancel of no job: %s\nwant exit 1, not_found", r)
		}
	})

	// A server answering 202 with the request, and 409 already_finished.
	var mu sync.Mutex
	var deletes []string
	future := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		deletes = append(deletes, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method != http.MethodDelete:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case strings.HasSuffix(r.URL.Path, "/done"):
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"code":"already_finished","detail":"the request already finished"}`)
		default:
			w.WriteHeader(http.StatusAccepted)
			json.NewEncoder(w).Encode(staging{ID: "running", Status: "running"})
		}
	}))
	defer future.Close()
	env := map[string]string{"STAGING_URL": future.URL}

	r := stagectl(t, env, "cancel", "running", "done")
	if r.code != exitFailed || !strings.Contains(r.stdout, "running cancel requested") || !strings.Contains(r.stderr, "done: already_finished") {
		t.Errorf("cancel of a running and a finished request: %s\nwant exit 1, one accepted, one already_finished", r)
	}
	r = stagectl(t, env, "cancel", "--job", "j1", "--json")
	var results []cancelResult
	pureJSON(t, r.stdout, &results)
	if r.code != exitOK || len(results) != 1 || !results[0].Cancelled {
		t.Errorf("cancel --job: %s\nwant exit 0 and the job's cancel requested", r)
	}
	want := []string{"DELETE /api/v1/stagings/running", "DELETE /api/v1/stagings/done", "DELETE /api/v1/jobs/j1"}
	if !slices.Equal(deletes, want) {
		t.Errorf("requests %q, want %q", deletes, want)
	}
}

// TestLifetime: --lifetime is sent only when given; this server honours
// it, one whose API does not know it gets a warning, one that refuses it a
// clear message.
func TestLifetime(t *testing.T) {
	ivan := newUser("ivan")
	src := sourceFile(t, "t.txt", []byte("lifetime\n"))
	r := mustRun(t, exitOK, "stage", "local_copy", src, "life/t.txt", "--user", ivan, "--lifetime", "2h")
	if strings.Contains(r.stderr, "does not list a lifetime field") {
		t.Errorf("a warning that this server, which honours lifetime, may ignore --lifetime:\n%s", r)
	}
	// The history says when the copy goes.
	eventually(t, 10*time.Second, "list --json to show when the copy expires", func() bool {
		var recs []record
		r := stagectl(t, nil, "list", "--user", ivan, "--json")
		if json.Unmarshal([]byte(r.stdout), &recs) != nil || len(recs) != 1 || recs[0].ExpiresAt == nil {
			return false
		}
		left := time.Until(*recs[0].ExpiresAt)
		return left > time.Hour && left <= 2*time.Hour
	})
	older := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/openapi.json" {
			io.WriteString(w, `{"components":{"schemas":{"SubmitRequest":{"properties":{"method":{}}}}}}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x0","status":"queued"}`)
	}))
	defer older.Close()
	r = stagectl(t, map[string]string{"STAGING_URL": older.URL}, "stage", "local_copy", "a", "b", "--user", ivan, "--lifetime", "2h")
	if !strings.Contains(r.stderr, "does not list a lifetime field") {
		t.Errorf("no warning that an older server may ignore --lifetime:\n%s", r)
	}

	var mu sync.Mutex
	var bodies []string
	strict := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/openapi.json" {
			io.WriteString(w, `{"components":{"schemas":{"SubmitRequest":{"properties":{"lifetime":{}}}}}}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(body))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(string(body), "lifetime") {
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"code":"malformed","detail":"request body is not valid JSON of the expected shape: json: unknown field \"lifetime\""}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"id":"x1","status":"queued"}`)
	}))
	defer strict.Close()
	env := map[string]string{"STAGING_URL": strict.URL}
	r = stagectl(t, env, "stage", "local_copy", "a", "b", "--user", ivan, "--lifetime", "7d")
	if r.code != exitFailed || !strings.Contains(r.stderr, "refused --lifetime") || strings.Contains(r.stderr, "warning") {
		t.Errorf("a server refusing lifetime: %s\nwant exit 1 saying it refused --lifetime", r)
	}
	if r := stagectl(t, env, "stage", "local_copy", "a", "b", "--user", ivan); r.code != exitOK {
		t.Errorf("without --lifetime: %s\nwant exit 0", r)
	}
	if len(bodies) != 2 || !strings.Contains(bodies[0], `"lifetime":604800`) || strings.Contains(bodies[1], "lifetime") {
		t.Errorf("bodies sent %q: want lifetime 604800 s in the first only", bodies)
	}
}

func TestHelpIsComplete(t *testing.T) {
	r := mustRun(t, exitOK, "--help")
	for _, want := range []string{"Exit codes", "0  every request succeeded", "2  usage error", "3  the server is unreachable", "STAGING_URL", "STAGING_TOKEN", "--json"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("root help lacks %q", want)
		}
	}
	root := (&app{getenv: os.Getenv}).rootCommand()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			continue
		}
		if len(c.Long) < 100 || c.Short == "" {
			t.Errorf("%s: help too short for a newcomer (Long %d characters)", c.Name(), len(c.Long))
		}
	}
	for shell, want := range map[string]string{"bash": "__start_stagectl", "zsh": "#compdef stagectl", "fish": "complete -c stagectl"} {
		// No server and a missing token file: a completion script needs neither.
		r := stagectl(t, map[string]string{"STAGING_URL": "http://127.0.0.1:1", "STAGING_TOKEN": "", "STAGING_TOKEN_FILE": "/nonexistent"}, "completion", shell)
		if r.code != exitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: %.300s\nwant exit 0 and %q", shell, r, want)
		}
	}
	// The shell asks the binary for METHOD's candidates: the server's methods.
	r = mustRun(t, exitOK, "__complete", "stage", "")
	if !strings.Contains(r.stdout, "local_copy\n") || !strings.Contains(r.stdout, "direct_download\n") {
		t.Errorf("completion of METHOD:\n%s\nwant the allowed methods", r.stdout)
	}
}

// TestTokenFile: the token comes from --token-file or STAGING_TOKEN_FILE,
// and a user's token stages only for that user.
func TestTokenFile(t *testing.T) {
	src := sourceFile(t, "tok.txt", []byte("token\n"))
	dir := t.TempDir()
	alice := filepath.Join(dir, "alice")
	os.WriteFile(alice, []byte(aliceToken+"\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	target := "tok/" + newUser("t")
	noToken := map[string]string{"STAGING_TOKEN": ""}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want int
	}{
		{"flag", noToken, []string{"--token-file", alice, "stage", "local_copy", src, target + "a", "--user", "alice"}, exitOK},
		{"environment", map[string]string{"STAGING_TOKEN": "", "STAGING_TOKEN_FILE": alice}, []string{"stage", "local_copy", src, target + "b", "--user", "alice"}, exitOK},
		{"for someone else", noToken, []string{"--token-file", alice, "stage", "local_copy", src, target + "c", "--user", "bob"}, exitFailed},
		{"empty file", noToken, []string{"--token-file", empty, "methods"}, exitUsage},
		{"missing file", noToken, []string{"--token-file", filepath.Join(dir, "none"), "methods"}, exitUsage},
		{"both", noToken, []string{"--token", "x", "--token-file", alice, "methods"}, exitUsage},
		{"none", noToken, []string{"list"}, exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := stagectl(t, tc.env, tc.args...); r.code != tc.want {
				t.Errorf("%s\nwant exit %d", r, tc.want)
			}
		})
	}
}
