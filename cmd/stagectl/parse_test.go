package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"3600", 3600, true},
		{"90m", 5400, true},
		{"24h", 86400, true},
		{"7d", 604800, true},
		{"1.5d", 129600, true},
		{"0", 0, false},
		{"-5", 0, false},
		{"500ms", 0, false},
		{"soon", 0, false},
		{"xd", 0, false},
	} {
		got, err := parseLifetime(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("parseLifetime(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && exitCode(err) != exitUsage {
			t.Errorf("parseLifetime(%q) error exits %d, want 2", tc.in, exitCode(err))
		}
	}
}

func TestCSVItems(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []item
		err  string
	}{
		{"positional", "local_copy,a,b\nlocal_copy, c , d ,bob,0a1b2c3d\n", []item{
			{Method: "local_copy", LocalPathOnStorage: "a", RelativePath: "b"},
			{Method: "local_copy", LocalPathOnStorage: "c", RelativePath: "d", Username: "bob", ExpectedAdler32: "0a1b2c3d"},
		}, ""},
		{"header with API names and a lifetime", "# comment\nMethod,relative_path,local_path_on_storage,username,lifetime\nlocal_copy,b,a,ann,2h\n", []item{
			{Method: "local_copy", LocalPathOnStorage: "a", RelativePath: "b", Username: "ann", Lifetime: 7200},
		}, ""},
		{"did column", "method,did,target,user\nlocal_copy,testsrc:ds1,ds1,ann\n", []item{
			{Method: "local_copy", DID: "testsrc:ds1", RelativePath: "ds1", Username: "ann"},
		}, ""},
		{"unknown column", "method,colour\nlocal_copy,blue\n", nil, `unknown column "colour"`},
		{"too few fields", "local_copy,a\n", nil, "CSV row 1: 2 fields"},
		{"too many fields", "local_copy,a,b,c,d,e\n", nil, "CSV row 1: 6 fields"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := csvItems([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("csvItems = %v, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("csvItems = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestIdempotencyKeyFollowsTheItems(t *testing.T) {
	a := []item{{Method: "local_copy", Username: "ann", LocalPathOnStorage: "a", RelativePath: "b"}}
	b := []item{{Method: "local_copy", Username: "bob", LocalPathOnStorage: "a", RelativePath: "b"}}
	ka, _ := idempotencyKey(a)
	ka2, _ := idempotencyKey(a)
	kb, _ := idempotencyKey(b)
	if ka != ka2 || ka == kb || len(ka) > 255 {
		t.Errorf("keys %q, %q, %q: want the same for the same items, another for others, at most 255 characters", ka, ka2, kb)
	}
}

func TestReadSSE(t *testing.T) {
	stream := "retry: 3000\n\n: heartbeat\n\nid: 7\nevent: progress\ndata: {\"a\":1}\n\nevent: state\ndata: line one\ndata: line two\n\nid: 9\nevent: succeeded\ndata: {}\n\n"
	var got []sseFrame
	var retry time.Duration
	err := readSSE(strings.NewReader(stream), func(f sseFrame) bool {
		got = append(got, f)
		return true
	}, func(d time.Duration) { retry = d })
	want := []sseFrame{
		{ID: "7", Event: "progress", Data: `{"a":1}`},
		{ID: "7", Event: "state", Data: "line one\nline two"}, // the last id stays, as in the SSE spec
		{ID: "9", Event: "succeeded", Data: "{}"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("frames %+v, want %+v", got, want)
	}
	if retry != 3*time.Second {
		t.Errorf("retry %s, want 3s", retry)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a stream that ends while read returns %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrameState(t *testing.T) {
	for _, tc := range []struct {
		frame  sseFrame
		status string
		ok     bool
	}{
		{sseFrame{Event: "started", Data: `{"id":"ev1","type":"started","request_id":"r1"}`}, "running", true},
		{sseFrame{Event: "resolved", Data: `{"id":"ev5","type":"resolved","request_id":"r1","did":"testsrc:ds1","resolved":{"files":2,"bytes":50,"part":1,"parts":1,"paths":["a","b"]}}`}, "running", true},
		{sseFrame{Event: "progress", Data: `{"id":"ev2","type":"progress","request_id":"r1","progress":{"bytes_done":1,"bytes_total":2}}`}, "running", true},
		{sseFrame{Event: "failed", Data: `{"id":"ev3","type":"failed","request_id":"r1","error":{"code":"io_error","detail":"x"}}`}, "failed", true},
		// From a newer server: an end this client does not know by name.
		{sseFrame{Event: "cancelled", Data: `{"id":"ev4","type":"cancelled","request_id":"r1"}`}, "cancelled", true},
		{sseFrame{Event: "state", Data: `{"id":"r1","status":"succeeded"}`}, "succeeded", true},
		{sseFrame{Event: "started", Data: `not json`}, "", false},
	} {
		s, ok := frameState(tc.frame)
		if ok != tc.ok || s.Status != tc.status || (ok && s.ID != "r1") {
			t.Errorf("frameState(%s) = %+v, %v; want r1 %s, %v", tc.frame.Event, s, ok, tc.status, tc.ok)
		}
		if ok && s.finished() != (tc.status != "running") {
			t.Errorf("frameState(%s): %s finished = %v", tc.frame.Event, s.Status, s.finished())
		}
	}
}

func TestDownloadHeaders(t *testing.T) {
	if got := rangeStart("bytes 1048576-3157727/3157728"); got != 1048576 {
		t.Errorf("rangeStart = %d, want 1048576", got)
	}
	if got := rangeStart("items 1-2/3"); got != -1 {
		t.Errorf("rangeStart of another unit = %d, want -1", got)
	}
	h := http.Header{"Digest": {"md5=abc, ADLER32=0A1B2C3D"}}
	if got := digestAdler32(h); got != "0a1b2c3d" {
		t.Errorf("digestAdler32 = %q, want 0a1b2c3d", got)
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct{ server, ref, want string }{
		{"http://h:8080", "/api/v1/methods", "http://h:8080/api/v1/methods"},
		{"http://h:8080/", "/api/v1/methods", "http://h:8080/api/v1/methods"},
		{"https://h/staging", "/api/v1/methods", "https://h/staging/api/v1/methods"},
		{"https://h/staging", "/staging/api/v1/downloads/t", "https://h/staging/api/v1/downloads/t"},
		{"https://h/staging", "https://other/api/v1/downloads/t", "https://other/api/v1/downloads/t"},
	} {
		c, err := newClient(tc.server, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.resolve(tc.ref); got != tc.want {
			t.Errorf("server %s: resolve(%s) = %s, want %s", tc.server, tc.ref, got, tc.want)
		}
	}
}

// TestTokenStaysWithTheGateway: a download link on another host does not
// receive the gateway's bearer token.
func TestTokenStaysWithTheGateway(t *testing.T) {
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer other.Close()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	defer gw.Close()
	c, _ := newClient(gw.URL, "secret")
	for _, ref := range []string{"/api/v1/methods", other.URL + "/api/v1/downloads/t"} {
		resp, err := c.do(t.Context(), http.MethodGet, ref, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(got) != 2 || got[0] != "Bearer secret" || got[1] != "" {
		t.Errorf("Authorization sent %q, want the token to the gateway only", got)
	}
}

func TestWorse(t *testing.T) {
	for _, tc := range []struct{ a, b, want int }{
		{exitOK, exitFailed, exitFailed},
		{exitFailed, exitOK, exitFailed},
		{exitFailed, exitUnreachable, exitUnreachable},
		{exitUnreachable, exitFailed, exitUnreachable},
	} {
		if got := worse(tc.a, tc.b); got != tc.want {
			t.Errorf("worse(%d, %d) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
