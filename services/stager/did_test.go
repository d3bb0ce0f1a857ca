package stager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/rucio/ruciotest"
	"github.com/skao/skao-staging/services/stager"
)

// didSystem is a stager whose site's Rucio is a fake, its RSE's prefix
// the stager's source root, holding:
//
//	testsrc:file1            a file
//	testsrc:ds1              file1 and dir/x (a name with a '/')
//	testsrc:outer            ds1 and the container inner, holding user.jdoe:ds2 (a.root)
//	testsrc:elsewhere        a file held at CERN_DISK only
//	testsrc:copying          a file whose replica here is COPYING
type didSystem struct {
	*system
	rucio *ruciotest.Server
}

func startDIDStager(t *testing.T, edit func(*rucio.Config)) *didSystem {
	t.Helper()
	var fake *ruciotest.Server
	s := startStager(t, func(cfg *stager.Config) {
		fake = ruciotest.New(t, "SITE_POSIX", cfg.SourceRoot+"/")
		cfg.Rucio = rucio.Config{URL: fake.URL, Account: ruciotest.Account, Username: ruciotest.Username,
			Password: ruciotest.Password, RSE: fake.RSE, PFNPrefix: fake.PFNPrefix(), Timeout: 5 * time.Second, Retries: 2}
		if edit != nil {
			edit(&cfg.Rucio)
		}
	})
	d := &didSystem{system: s, rucio: fake}
	d.file(t, "testsrc", "file1", "one")
	d.file(t, "testsrc", "dir/x", "deeper")
	d.file(t, "user.jdoe", "a.root", "jdoe's")
	fake.AddCollection("DATASET", "testsrc", "ds1", "testsrc:file1", "testsrc:dir/x")
	fake.AddCollection("DATASET", "user.jdoe", "ds2", "user.jdoe:a.root")
	fake.AddCollection("CONTAINER", "testsrc", "inner", "user.jdoe:ds2")
	fake.AddCollection("CONTAINER", "testsrc", "outer", "testsrc:ds1", "testsrc:inner")
	fake.AddFile("testsrc", "elsewhere", []byte("x"), "CERN_DISK")
	d.file(t, "testsrc", "copying", "x")
	fake.SetState("testsrc", "copying", "SITE_POSIX", "COPYING")
	return d
}

// file writes content at the DID's deterministic path and registers it.
func (d *didSystem) file(t *testing.T, scope, name, content string) {
	t.Helper()
	d.write(t, ruciotest.Path(scope, name), content)
	d.rucio.AddFile(scope, name, []byte(content))
}

func (d *didSystem) submitDID(t *testing.T, method contract.Method, did, rel string) string {
	t.Helper()
	cmd := contract.Command{
		SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: method, Username: "alice",
		DID: did, RelativePath: rel, Origin: "test", RequestedAt: time.Now().UTC(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.PublishCommand(ctx, d.js, cmd); err != nil {
		t.Fatal(err)
	}
	return cmd.ID
}

// tree lists the files below dir of the user area with their content.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLocalCopyOfDID(t *testing.T) {
	d := startDIDStager(t, nil)
	file1, x, root := ruciotest.Path("testsrc", "file1"), ruciotest.Path("testsrc", "dir/x"), ruciotest.Path("user.jdoe", "a.root")
	for _, tt := range []struct {
		did   string
		want  map[string]string
		bytes int64
		paths []string // in Rucio's order
	}{
		{"testsrc:file1", map[string]string{".": "one"}, 3, []string{file1}},
		{"testsrc:ds1", map[string]string{"file1": "one", "dir/x": "deeper"}, 9, []string{file1, x}},
		{"testsrc:outer", map[string]string{"file1": "one", "dir/x": "deeper", "a.root": "jdoe's"}, 15, []string{file1, x, root}},
	} {
		t.Run(tt.did, func(t *testing.T) {
			rel := "rucio/" + strings.ReplaceAll(tt.did, ":", "_")
			id := d.submitDID(t, contract.MethodLocalCopy, tt.did, rel)
			evs := d.events(t, contract.EventSubject(id))
			want := []summary{{Type: contract.EventStarted}, {Type: contract.EventResolved},
				{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: tt.bytes, Files: int64(len(tt.want))}}
			if diff := cmp.Diff(summarize(evs), want); diff != "" {
				t.Fatalf("events (-got +want):\n%s", diff)
			}
			checkResolved(t, evs, tt.bytes, tt.paths)
			for _, ev := range evs {
				if ev.DID != tt.did || ev.LocalPathOnStorage != "" {
					t.Errorf("%s event: did %q, local_path_on_storage %q; want the DID alone", ev.Type, ev.DID, ev.LocalPathOnStorage)
				}
			}
			if msg := evs[len(evs)-1].Message; !strings.Contains(msg, "of "+tt.did) {
				t.Errorf("message %q does not name the DID", msg)
			}
			if diff := cmp.Diff(tree(t, filepath.Join(d.userArea, "alice", rel)), tt.want); diff != "" {
				t.Errorf("staged (-got +want):\n%s", diff)
			}
		})
	}
}

// checkResolved checks that the resolved events among evs, all before any
// other event but started, are valid and report the DID's totals (its
// files and bytes) and paths in parts 1 to n, in order.
func checkResolved(t *testing.T, evs []contract.Event, bytes int64, paths []string) {
	t.Helper()
	var got []string
	var parts []int
	for i, ev := range evs {
		if ev.Type != contract.EventResolved {
			continue
		}
		if i == 0 || evs[i-1].Type != contract.EventStarted && evs[i-1].Type != contract.EventResolved {
			t.Errorf("resolved event %d follows a %s event; want it right after started", i, evs[max(i-1, 0)].Type)
		}
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := contract.DecodeEvent(contract.EventSubject(ev.RequestID), data); err != nil {
			t.Errorf("resolved event %d: %v", i, err)
		}
		r := ev.Resolved
		if r.Files != int64(len(paths)) || r.Bytes != bytes || r.Part != len(parts)+1 {
			t.Errorf("resolved event %d: %d files, %d bytes, part %d; want %d files, %d bytes, part %d", i, r.Files, r.Bytes, r.Part, len(paths), bytes, len(parts)+1)
		}
		parts = append(parts, r.Parts)
		got = append(got, r.Paths...)
	}
	for _, n := range parts {
		if n != len(parts) {
			t.Errorf("resolved events say %v parts; %d came", parts, len(parts))
			break
		}
	}
	if diff := cmp.Diff(got, paths); diff != "" {
		t.Errorf("resolved paths (-got +want):\n%s", diff)
	}
}

// TestResolvedInParts: a dataset of more files than one resolved event
// names is reported in several, in order, before anything is copied.
func TestResolvedInParts(t *testing.T) {
	d := startDIDStager(t, nil)
	const n = contract.MaxResolvedPaths + 3
	var dids, paths []string
	for i := range n {
		name := fmt.Sprintf("big/f%04d", i)
		d.file(t, "testsrc", name, "x")
		dids = append(dids, "testsrc:"+name)
		paths = append(paths, ruciotest.Path("testsrc", name))
	}
	d.rucio.AddCollection("DATASET", "testsrc", "big", dids...)
	id := d.submitDID(t, contract.MethodLocalSymlink, "testsrc:big", "big")
	evs := d.events(t, contract.EventSubject(id))
	want := []summary{{Type: contract.EventStarted}, {Type: contract.EventResolved}, {Type: contract.EventResolved},
		{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: n, Files: n}}
	if diff := cmp.Diff(summarize(evs), want); diff != "" {
		t.Fatalf("events (-got +want):\n%s", diff)
	}
	checkResolved(t, evs, n, paths)
	if got := evs[1].Message; got != fmt.Sprintf("testsrc:big resolved into %d files (%d bytes); part 1 of 2", n, n) {
		t.Errorf("message %q", got)
	}
}

func TestDIDOutcomes(t *testing.T) {
	d := startDIDStager(t, nil)
	d.file(t, "testsrc", "bad-sum", "twelve bytes")
	d.rucio.SetCatalogue("testsrc", "bad-sum", 12, "00000001", "")
	d.file(t, "testsrc", "bad-size", "short")
	d.rucio.SetCatalogue("testsrc", "bad-size", 50, "", "")
	d.rucio.AddCollection("DATASET", "testsrc", "dsbad", "testsrc:file1", "testsrc:bad-sum")
	d.file(t, "testsrc", "../../escape", "x")
	d.rucio.AddCollection("DATASET", "testsrc", "dsescape", "testsrc:../../escape")
	for _, tt := range []struct {
		did    string
		code   contract.Code
		detail string
	}{
		{"testsrc:nosuch", contract.CodeDIDNotFound, "nosuch"},
		{"testsrc:elsewhere", contract.CodeNotAtSite, "CERN_DISK"},
		{"testsrc:copying", contract.CodeReplicaUnavailable, "COPYING"},
		{"testsrc:bad-sum", contract.CodeChecksumMismatch, "bad-sum"},
		{"testsrc:bad-size", contract.CodeSizeMismatch, "bad-size"},
		{"testsrc:dsbad", contract.CodeChecksumMismatch, "bad-sum"},
		{"testsrc:dsescape", contract.CodeInvalidPath, "../../escape"},
	} {
		t.Run(tt.did, func(t *testing.T) {
			rel := "rucio/" + strings.ReplaceAll(tt.did, ":", "_")
			last := d.failDID(t, contract.MethodLocalCopy, tt.did, rel, tt.code, tt.detail)
			if last.DID != tt.did {
				t.Errorf("failed event did %q, want %q", last.DID, tt.did)
			}
			if _, err := os.Lstat(filepath.Join(d.userArea, "alice", rel)); !os.IsNotExist(err) {
				t.Errorf("something is at the target after a failure: %v", err)
			}
		})
	}
}

// failDID submits a request of did by method and checks that it fails
// with code, its detail naming detail; it returns the failed event.
func (d *didSystem) failDID(t *testing.T, method contract.Method, did, rel string, code contract.Code, detail string) contract.Event {
	t.Helper()
	last := lastEvent(t, d.system, d.submitDID(t, method, did, rel))
	if last.Type != contract.EventFailed || last.Error.Code != code || !strings.Contains(last.Error.Detail, detail) {
		t.Fatalf("%s of %s: last event %s %+v, want failed %s naming %q", method, did, last.Type, last.Error, code, detail)
	}
	return last
}

// TestDIDRucioDown: a failing Rucio is retried within the call, then on
// each delivery, and the request fails with rucio_unavailable on the last
// one; the stager works on once it is back.
func TestDIDRucioDown(t *testing.T) {
	d := startDIDStager(t, nil)
	d.rucio.Fail(1000)
	id := d.submitDID(t, contract.MethodLocalCopy, "testsrc:file1", "down/file1")
	evs := d.events(t, contract.EventSubject(id))
	last := evs[len(evs)-1]
	if last.Type != contract.EventFailed || last.Error.Code != contract.CodeRucioUnavailable || last.Attempt != d.cfg.MaxDeliver {
		t.Fatalf("last event %s %+v on attempt %d, want failed rucio_unavailable on attempt %d", last.Type, last.Error, last.Attempt, d.cfg.MaxDeliver)
	}
	d.rucio.Fail(0)
	id = d.submitDID(t, contract.MethodLocalCopy, "testsrc:file1", "up/file1")
	if last := lastEvent(t, d.system, id); last.Type != contract.EventSucceeded {
		t.Fatalf("after Rucio came back: %s %+v", last.Type, last.Error)
	}
}

// TestDIDTokenExpiry: the stager's token expires between two requests; the
// second logs in again and succeeds.
func TestDIDTokenExpiry(t *testing.T) {
	d := startDIDStager(t, nil)
	if last := lastEvent(t, d.system, d.submitDID(t, contract.MethodLocalCopy, "testsrc:file1", "t1")); last.Type != contract.EventSucceeded {
		t.Fatalf("first: %s %+v", last.Type, last.Error)
	}
	d.rucio.ExpireTokens()
	if last := lastEvent(t, d.system, d.submitDID(t, contract.MethodLocalCopy, "testsrc:file1", "t2")); last.Type != contract.EventSucceeded {
		t.Fatalf("after the token expired: %s %+v", last.Type, last.Error)
	}
}

// TestLinksOfDID: the linking methods link a file DID as a path, and make
// a dataset or container a directory of links to its files; a download
// link serves a file DID as its file, a dataset or a container as one tar
// archive of its files.
func TestLinksOfDID(t *testing.T) {
	d := startDIDStager(t, nil)
	for _, m := range []contract.Method{contract.MethodLocalSymlink, contract.MethodLocalHardlink} {
		t.Run(string(m), func(t *testing.T) {
			for _, tt := range []struct {
				did  string
				want map[string]string
			}{
				{"testsrc:file1", map[string]string{".": "one"}},
				{"testsrc:ds1", map[string]string{"file1": "one", "dir/x": "deeper"}},
				{"testsrc:outer", map[string]string{"file1": "one", "dir/x": "deeper", "a.root": "jdoe's"}},
			} {
				rel := "links/" + string(m) + "/" + strings.ReplaceAll(tt.did, ":", "_")
				evs := d.events(t, contract.EventSubject(d.submitDID(t, m, tt.did, rel)))
				last := evs[len(evs)-1]
				if last.Type != contract.EventSucceeded || last.DID != tt.did {
					t.Fatalf("%s: %s %+v", tt.did, last.Type, last.Error)
				}
				if got := resolvedFiles(evs); got != int64(len(tt.want)) {
					t.Errorf("%s: resolved events report %d files, want %d", tt.did, got, len(tt.want))
				}
				top := filepath.Join(d.userArea, "alice", rel)
				if diff := cmp.Diff(tree(t, top), tt.want); diff != "" {
					t.Errorf("%s staged (-got +want):\n%s", tt.did, diff)
				}
				// Links, not copies: a symbolic link each, or the source's inode.
				name := "."
				if len(tt.want) > 1 {
					name = "file1"
				}
				p := filepath.Join(top, name)
				fi, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				src, _ := os.Stat(filepath.Join(d.storage, ruciotest.Path("testsrc", "file1")))
				switch {
				case m == contract.MethodLocalSymlink && fi.Mode().Type() != os.ModeSymlink:
					t.Errorf("%s: %s is %v, not a symbolic link", tt.did, name, fi.Mode())
				case m == contract.MethodLocalHardlink && !os.SameFile(fi, src):
					t.Errorf("%s: %s is not a hard link to the source", tt.did, name)
				}
			}
		})
	}
	t.Run("direct_download", func(t *testing.T) {
		srv := httptest.NewServer(d.downloadHandler(t, prometheus.NewRegistry()))
		defer srv.Close()
		link := func(t *testing.T, did string) contract.Event {
			t.Helper()
			last := lastEvent(t, d.system, d.submitDID(t, contract.MethodDirectDownload, did, "dl"))
			if last.Type != contract.EventSucceeded || last.Outcome != contract.OutcomeLinkIssued || last.DID != did || last.DownloadURL == "" {
				t.Fatalf("%s: %s %+v, want a link", did, last.Type, last.Error)
			}
			return last
		}

		last := link(t, "testsrc:file1")
		checkResolved(t, d.events(t, contract.EventSubject(last.RequestID)), 3, []string{ruciotest.Path("testsrc", "file1")})
		resp, body := fetch(t, srv.Client(), http.MethodGet, srv.URL+last.DownloadURL)
		if string(body) != "one" || resp.Header.Get("Content-Disposition") != "attachment; filename=file1" {
			t.Errorf("file DID: body %q, Content-Disposition %q; want the file itself", body, resp.Header.Get("Content-Disposition"))
		}

		// A dataset or a container: one tar archive of its files, each
		// under the DID's name, its names' directories before them.
		for _, tt := range []struct {
			did, kind, name string
			want            []string
			files, bytes    int64
		}{
			{"testsrc:ds1", "dataset", "ds1", []string{"ds1/ ", "ds1/file1 one", "ds1/dir/ ", "ds1/dir/x deeper"}, 2, 9},
			{"testsrc:outer", "container", "outer", []string{"outer/ ", "outer/file1 one", "outer/dir/ ", "outer/dir/x deeper", "outer/a.root jdoe's"}, 3, 15},
		} {
			last := link(t, tt.did)
			if last.Files != tt.files || last.Bytes != tt.bytes {
				t.Errorf("%s: link issued for %d files, %d bytes; want %d, %d", tt.did, last.Files, last.Bytes, tt.files, tt.bytes)
			}
			if !strings.Contains(last.Message, tt.kind+" "+tt.did+" (as a tar archive") {
				t.Errorf("%s: message %q does not name the %s as an archive", tt.did, last.Message, tt.kind)
			}
			url := srv.URL + last.DownloadURL
			// HEAD answers the headers without asking Rucio.
			calls := d.rucio.Calls()
			resp, body := fetch(t, srv.Client(), http.MethodHead, url)
			if resp.StatusCode != http.StatusOK || len(body) != 0 || d.rucio.Calls() != calls {
				t.Errorf("%s: HEAD answered %d with %d bytes after %d calls to Rucio", tt.did, resp.StatusCode, len(body), d.rucio.Calls()-calls)
			}
			resp, body = fetch(t, srv.Client(), http.MethodGet, url)
			if got, want := resp.Header.Get("Content-Disposition"), "attachment; filename="+tt.name+".tar"; resp.StatusCode != http.StatusOK ||
				resp.Header.Get("Content-Type") != "application/x-tar" || got != want {
				t.Fatalf("%s: status %d, Content-Type %q, Content-Disposition %q", tt.did, resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			got, err := untar(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%s: %v", tt.did, err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("%s archive (-got +want):\n%s", tt.did, diff)
			}
			raw := d.downloadEvents(t, last.RequestID, 2)
			evs := summarizeDownloads(t, last.RequestID, raw)
			if diff := cmp.Diff(evs, []dlSummary{{Type: contract.DownloadStarted}, {Type: contract.DownloadCompleted, Bytes: int64(len(body))}}); diff != "" {
				t.Errorf("%s download events (-got +want):\n%s", tt.did, diff)
			}
			for _, ev := range raw {
				if ev.DID != tt.did || ev.LocalPathOnStorage != "" {
					t.Errorf("%s %s: did %q, local_path_on_storage %q; want the DID alone", tt.did, ev.Type, ev.DID, ev.LocalPathOnStorage)
				}
			}
		}

		// A file that is not what the catalogue says is found as it is
		// sent: the archive is cut short, and the download failed.
		d.file(t, "testsrc", "bad-sum", "twelve bytes")
		d.rucio.SetCatalogue("testsrc", "bad-sum", 12, "00000001", "")
		d.rucio.AddCollection("DATASET", "testsrc", "dsbad", "testsrc:file1", "testsrc:bad-sum")
		last = link(t, "testsrc:dsbad")
		resp, err := srv.Client().Get(srv.URL + last.DownloadURL)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Error("the archive with a file of another checksum came whole")
		}
		evs := summarizeDownloads(t, last.RequestID, d.downloadEvents(t, last.RequestID, 2))
		if evs[0].Type != contract.DownloadStarted || evs[1].Type != contract.DownloadFailed || evs[1].Code != contract.CodeIOError {
			t.Errorf("download events %+v, want started then failed io_error", evs)
		}

		// Rucio away when the link is used: nothing is sent, and the
		// client is told so.
		last = link(t, "testsrc:ds1")
		d.rucio.Fail(1000)
		resp, body = fetch(t, srv.Client(), http.MethodGet, srv.URL+last.DownloadURL)
		d.rucio.Fail(0)
		var e contract.Error
		if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Code != contract.CodeRucioUnavailable {
			t.Errorf("with Rucio away: %d %s, want 503 rucio_unavailable", resp.StatusCode, body)
		}
		d.downloadEvents(t, last.RequestID, 0)

		// What fails a copy fails the link before it is issued.
		d.rucio.AddCollection("DATASET", "testsrc", "dselse", "testsrc:file1", "testsrc:elsewhere")
		d.failDID(t, contract.MethodDirectDownload, "testsrc:dselse", "dl", contract.CodeNotAtSite, "CERN_DISK")
		d.failDID(t, contract.MethodDirectDownload, "testsrc:nosuch", "dl", contract.CodeDIDNotFound, "nosuch")
	})
}

// resolvedFiles is the DID's file count the resolved events among evs
// report (0 without any).
func resolvedFiles(evs []contract.Event) int64 {
	for _, ev := range evs {
		if ev.Resolved != nil {
			return ev.Resolved.Files
		}
	}
	return 0
}

func lastEvent(t *testing.T, s *system, id string) contract.Event {
	t.Helper()
	evs := s.events(t, contract.EventSubject(id))
	return evs[len(evs)-1]
}
