package stager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/contract/contracttest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// downloadEvents reads the download events of request id until there are
// want of them, and checks that no more follow shortly after.
func (s *system) downloadEvents(t *testing.T, id string, want int) []contract.DownloadEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := s.js.OrderedConsumer(ctx, contract.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{contract.DownloadSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	var evs []contract.DownloadEvent
	for len(evs) < want {
		msg, err := c.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for download events of %s (got %d of %d: %+v): %v", id, len(evs), want, evs, err)
		}
		var ev contract.DownloadEvent
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if msg, err := c.Next(jetstream.FetchMaxWait(300 * time.Millisecond)); err == nil {
		t.Errorf("an unexpected download event: %s", msg.Data())
	}
	return evs
}

// dlSummary keeps the fields of a download event a test compares.
type dlSummary struct {
	Type  contract.DownloadEventType
	Size  int64
	Bytes int64
	Range string
	Code  contract.Code
}

func summarizeDownloads(t *testing.T, id string, evs []contract.DownloadEvent) []dlSummary {
	t.Helper()
	var out []dlSummary
	for i, ev := range evs {
		if ev.RequestID != id || ev.Username != "alice" || ev.ID == "" || ev.Source != "stager" || ev.Time.IsZero() || ev.SpecVersion != contract.SpecVersion {
			t.Errorf("download event %d lacks its request's fields: %+v", i, ev)
		}
		if ev.DownloadID != evs[i/2*2].DownloadID {
			t.Errorf("download event %d is not of the same download as its start: %+v", i, ev)
		}
		s := dlSummary{Type: ev.Type, Size: ev.Size, Bytes: ev.Bytes, Range: ev.Range}
		if ev.Error != nil {
			s.Code = ev.Error.Code
		}
		out = append(out, s)
	}
	return out
}

// Each download through a link is a download_started and a
// download_completed (or download_failed) on staging.downloads.<id>, with
// the bytes actually sent; the request's state stays its succeeded event.
func TestDownloadEvents(t *testing.T) {
	forEachDownloadPath(t, testDownloadEvents)
}

func testDownloadEvents(t *testing.T, edit func(*stager.Config)) {
	s := startStager(t, edit)
	content := bytes.Repeat([]byte("0123456789"), 1000)
	s.write(t, "obs/big.ms", string(content))
	s.write(t, "run/a.txt", "a")
	// Large enough not to fit in the socket buffers of a client that stops
	// reading.
	huge := bytes.Repeat([]byte("x"), 64<<20)
	s.write(t, "obs/huge.ms", string(huge))

	reg := prometheus.NewRegistry()
	h := s.downloadHandler(t, reg)
	srv := httptest.NewServer(h)
	defer srv.Close()

	link := func(t *testing.T, src string) (id, url string) {
		t.Helper()
		id = s.submit(t, contract.MethodDirectDownload, src, src)
		evs := s.events(t, contract.EventSubject(id))
		last := evs[len(evs)-1]
		if last.Outcome != contract.OutcomeLinkIssued {
			t.Fatalf("last event = %+v, want a link", last)
		}
		return id, srv.URL + last.DownloadURL
	}
	get := func(t *testing.T, method, url string, hdr ...string) []byte {
		t.Helper()
		_, body := fetch(t, srv.Client(), method, url, hdr...)
		return body
	}

	t.Run("whole file, then a range", func(t *testing.T) {
		id, url := link(t, "obs/big.ms")
		if body := get(t, http.MethodGet, url); !bytes.Equal(body, content) {
			t.Fatalf("body has %d bytes, want %d", len(body), len(content))
		}
		if body := get(t, http.MethodGet, url, "Range", "bytes=100-109"); !bytes.Equal(body, content[100:110]) {
			t.Fatalf("range body = %q", body)
		}
		// Neither a HEAD nor an unsatisfiable range is a download.
		get(t, http.MethodHead, url)
		get(t, http.MethodGet, url, "Range", "bytes=99999-")
		got := summarizeDownloads(t, id, s.downloadEvents(t, id, 4))
		want := []dlSummary{
			{Type: contract.DownloadStarted, Size: 10000},
			{Type: contract.DownloadCompleted, Bytes: 10000},
			{Type: contract.DownloadStarted, Size: 10, Range: "bytes=100-109"},
			{Type: contract.DownloadCompleted, Bytes: 10, Range: "bytes=100-109"},
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("download events (-got +want):\n%s", diff)
		}
		evs := s.events(t, contract.EventSubject(id))
		if last := evs[len(evs)-1]; last.Type != contract.EventSucceeded {
			t.Errorf("request state after the downloads = %s, want succeeded", last.Type)
		}
	})

	t.Run("directory as a tar archive", func(t *testing.T) {
		id, url := link(t, "run")
		body := get(t, http.MethodGet, url)
		got := summarizeDownloads(t, id, s.downloadEvents(t, id, 2))
		want := []dlSummary{{Type: contract.DownloadStarted}, {Type: contract.DownloadCompleted, Bytes: int64(len(body))}}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("download events (-got +want):\n%s", diff)
		}
	})

	t.Run("client gone", func(t *testing.T) {
		id, url := link(t, "obs/huge.ms")
		resp, err := srv.Client().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
			t.Fatal(err)
		}
		// Closing the body unread drops the connection.
		resp.Body.Close()
		evs := s.downloadEvents(t, id, 2)
		got := summarizeDownloads(t, id, evs)
		if got[0].Type != contract.DownloadStarted || got[1].Type != contract.DownloadFailed || got[1].Code != contract.CodeClientGone {
			t.Fatalf("download events = %+v, want started then failed client_gone", got)
		}
		if sent := evs[1].Bytes; sent < 1024 || sent >= int64(len(huge)) {
			t.Errorf("bytes sent before the client left = %d, want between 1024 and %d", sent, len(huge))
		}
	})

	testenv.Eventually(t, 5*time.Second, "the events to be counted as published", func() bool {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "staging_stager_download_events_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				if m.GetLabel()[0].GetValue() == "published" {
					return m.GetCounter().GetValue() == 8
				}
			}
		}
		return false
	})
}

// A Range header is bounded: more than 16 ranges, or overlapping ones, are
// refused 416 range_not_satisfiable at once, whatever the header's length;
// the download events hold the ranges served in a short normalised form.
func TestDownloadRangesBounded(t *testing.T) {
	s := startStager(t, nil)
	content := bytes.Repeat([]byte("0123456789"), 1000)
	s.write(t, "obs/big.ms", string(content))
	id := s.submit(t, contract.MethodDirectDownload, "obs/big.ms", "big.ms")
	evs := s.events(t, contract.EventSubject(id))
	h := s.downloadHandler(t, prometheus.NewRegistry())
	srv := httptest.NewServer(h)
	defer srv.Close()
	url := srv.URL + evs[len(evs)-1].DownloadURL

	ranges := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-%d", i%len(content), i%len(content))
		}
		return "bytes=" + strings.Join(parts, ",")
	}
	tests := []struct {
		name, rangeHdr string
		status         int
	}{
		{"60000 one-byte ranges", ranges(60000), http.StatusRequestedRangeNotSatisfiable},
		{"17 ranges", ranges(17), http.StatusRequestedRangeNotSatisfiable},
		{"overlapping", "bytes=0-5000,4000-9999", http.StatusRequestedRangeNotSatisfiable},
		{"the same range twice", "bytes=0-99,0-99", http.StatusRequestedRangeNotSatisfiable},
		{"past the end", "bytes=20000-", http.StatusRequestedRangeNotSatisfiable},
		{"16 ranges", ranges(16), http.StatusPartialContent},
		{"out of order, apart", "bytes=200-299, 0-99", http.StatusPartialContent},
		{"suffix", "bytes=-10", http.StatusPartialContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := fetch(t, srv.Client(), http.MethodGet, url, "Range", tt.rangeHdr)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%d bytes)", resp.StatusCode, tt.status, len(body))
			}
			if tt.status != http.StatusRequestedRangeNotSatisfiable {
				return
			}
			var e contract.Error
			if err := json.Unmarshal(body, &e); err != nil || e.Code != contract.CodeRangeNotSatisfiable {
				t.Errorf("body = %s, want a range_not_satisfiable error", body)
			}
			if got := resp.Header.Get("Content-Range"); got != "bytes */10000" {
				t.Errorf("Content-Range = %q, want bytes */10000", got)
			}
		})
	}

	got := s.downloadEvents(t, id, 6)
	schema := contracttest.Schema(t, contracttest.Download)
	var started []string
	for _, ev := range got {
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		contracttest.Check(t, schema, data)
		if ev.Type == contract.DownloadStarted {
			started = append(started, ev.Range)
		}
	}
	want := []string{
		"bytes=0-0,1-1,2-2,3-3,4-4,5-5,6-6,7-7,8-8,9-9,10-10,11-11,12-12,13-13,14-14,15-15",
		"bytes=200-299,0-99",
		"bytes=9990-9999",
	}
	if diff := cmp.Diff(started, want); diff != "" {
		t.Errorf("ranges of the downloads started (-got +want):\n%s", diff)
	}
}
