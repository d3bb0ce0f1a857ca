package ruciotest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/rucio/ruciotest"
)

// recording is what a real Rucio answered (testdata/rucio-*.json): the
// setup it was recorded with and the exchanges. A later recording put in
// its place is checked the same way.
type recording struct {
	Setup struct {
		RSE    string `json:"rse"`
		Prefix string `json:"prefix"`
		Files  []struct {
			Scope, Name  string
			Bytes        int64
			Adler32, MD5 string
		} `json:"files"`
		Datasets []struct {
			Scope, Name string
			Files       []string
		} `json:"datasets"`
	} `json:"setup"`
	Exchanges []struct {
		Name            string            `json:"name"`
		Path            string            `json:"path"`
		Token           string            `json:"token"` // "" a valid one, "none", "bad"
		Headers         map[string]string `json:"headers"`
		Status          int               `json:"status"`
		ContentType     string            `json:"content_type"`
		ResponseHeaders []string          `json:"response_headers"`
		Empty           bool              `json:"empty"`
		ExactKeys       bool              `json:"exact_keys"`
		Body            []map[string]any  `json:"body"`
	} `json:"exchanges"`
}

// TestRecording replays the recorded exchanges against the fake, set up as
// the real server was. Each recorded line of an answer must be in the
// fake's (values equal where recorded; with exact_keys, no key more or
// less), in order; rse_id and tokens, which differ between servers, are
// not compared.
func TestRecording(t *testing.T) {
	data, err := os.ReadFile("testdata/rucio-41.0.0.json")
	if err != nil {
		t.Fatal(err)
	}
	var rec recording
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	s := ruciotest.New(t, rec.Setup.RSE, rec.Setup.Prefix)
	for _, f := range rec.Setup.Files {
		s.AddFile(f.Scope, f.Name, []byte(f.Name))
		if f.Adler32 != "" {
			s.SetCatalogue(f.Scope, f.Name, f.Bytes, f.Adler32, f.MD5)
		}
	}
	for _, d := range rec.Setup.Datasets {
		s.AddCollection("DATASET", d.Scope, d.Name, d.Files...)
	}
	for _, x := range rec.Exchanges {
		t.Run(x.Name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.URL+x.Path, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch x.Token {
			case "":
				req.Header.Set("X-Rucio-Auth-Token", s.IssueToken())
			case "bad":
				req.Header.Set("X-Rucio-Auth-Token", "root-ddmlab-unknown-00000000")
			}
			for k, v := range x.Headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != x.Status {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, x.Status, body)
			}
			if got := resp.Header.Get("Content-Type"); x.ContentType != "" && got != x.ContentType {
				t.Errorf("Content-Type %q, want %q", got, x.ContentType)
			}
			for _, h := range x.ResponseHeaders {
				if resp.Header.Get(h) == "" {
					t.Errorf("no %s header", h)
				}
			}
			if x.Empty && len(body) != 0 {
				t.Errorf("body %q, want none", body)
			}
			lines := ndjson(t, body)
			if len(lines) != len(x.Body) {
				t.Fatalf("%d lines, want %d: %s", len(lines), len(x.Body), body)
			}
			for i, want := range x.Body {
				got := lines[i]
				if x.ExactKeys {
					if diff := cmp.Diff(keys(got), keys(want)); diff != "" {
						t.Errorf("line %d keys (-got +want):\n%s", i, diff)
					}
				}
				if diff := cmp.Diff(pick(got, want), any(want)); diff != "" {
					t.Errorf("line %d (-got +want):\n%s", i, diff)
				}
			}
		})
	}
}

// TestLoginExpiry checks the recorded token lifetime and expiry header.
func TestLoginExpiry(t *testing.T) {
	s := ruciotest.New(t, "SITE_POSIX", "/srv/rse/")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/auth/userpass", nil)
	req.Header.Set("X-Rucio-Account", ruciotest.Account)
	req.Header.Set("X-Rucio-Username", ruciotest.Username)
	req.Header.Set("X-Rucio-Password", ruciotest.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Recorded: "Mon, 07 Dec 2026 08:13:52 UTC", one hour on.
	exp, err := time.Parse(time.RFC1123, resp.Header.Get("X-Rucio-Auth-Token-Expires"))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("token lives %v, want 1h", d)
	}
	if !strings.HasPrefix(resp.Header.Get("X-Rucio-Auth-Token"), "root-ddmlab-unknown-") {
		t.Errorf("token %q, not of the recorded form", resp.Header.Get("X-Rucio-Auth-Token"))
	}
}

// TestPath checks the deterministic "hash" paths against those Rucio gave.
func TestPath(t *testing.T) {
	for _, tt := range []struct{ scope, name, want string }{
		{"testsrc", "file1", "testsrc/22/da/file1"},
		{"user.jdoe", "a.root", "user/jdoe/f6/00/a.root"},
		{"testsrc", "dir/x", "testsrc/cf/df/dir/x"},
	} {
		if got := ruciotest.Path(tt.scope, tt.name); got != tt.want {
			t.Errorf("Path(%q, %q) = %q, want %q", tt.scope, tt.name, got, tt.want)
		}
	}
}

func ndjson(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			// Not JSON: an empty map, so the comparison names it.
			t.Errorf("line %q is not a JSON object: %v", sc.Bytes(), err)
		}
		out = append(out, m)
	}
	return out
}

// pick returns what of got the recording has a value for, recursively.
func pick(got, want any) any {
	w, ok := want.(map[string]any)
	g, gok := got.(map[string]any)
	if !ok || !gok {
		return got
	}
	out := map[string]any{}
	for k, wv := range w {
		if gv, has := g[k]; has {
			out[k] = pick(gv, wv)
		}
	}
	return out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
