package stager_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// A download to a client reading slowly lasts as long as the client keeps
// reading, far beyond the write timeout, through sendfile as through the
// buffered copy.
func TestSlowDownloadOutlastsWriteTimeout(t *testing.T) {
	forEachDownloadPath(t, func(t *testing.T, edit func(*stager.Config)) {
		s := startStager(t, edit)
		content := bytes.Repeat([]byte("0123456789abcdef"), (4<<20)/16)
		s.write(t, "obs/big.ms", string(content))
		id := s.submit(t, contract.MethodDirectDownload, "obs/big.ms", "big.ms")
		evs := s.events(t, contract.EventSubject(id))
		link := evs[len(evs)-1].DownloadURL
		if link == "" {
			t.Fatalf("no download link: %+v", evs[len(evs)-1])
		}
		h := s.downloadHandler(t, prometheus.NewRegistry())
		url := testenv.ServeHTTP(t, h, service.HTTPTimeouts{Write: 600 * time.Millisecond})
		resp, err := testenv.SlowClient().Get(url + link)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// 128 KiB every 40 ms: about 1.3 s for the whole file.
		got, err := testenv.ReadSlowly(resp.Body, 128<<10, 40*time.Millisecond)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read %d of %d bytes: %v", len(got), len(content), err)
		}
	})
}
