package logwindow_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway/internal/logwindow"
)

func lines(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

func TestWindowKeepsTheNewest(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		added int
		limit int
		want  []string
	}{
		{"empty", 3, 0, 0, []string{}},
		{"not full", 3, 2, 0, lines(1, 2)},
		{"exactly full", 3, 3, 0, lines(1, 3)},
		{"wrapped", 3, 7, 0, lines(5, 7)},
		{"wrapped, limit", 3, 7, 2, lines(6, 7)},
		{"limit above size", 3, 7, 10, lines(5, 7)},
		{"size one", 1, 4, 0, lines(4, 4)},
		{"size zero holds one", 0, 2, 0, lines(2, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := logwindow.New(tt.size)
			for i := 1; i <= tt.added; i++ {
				w.Add(fmt.Sprint(i))
			}
			if diff := cmp.Diff(w.Last(tt.limit), tt.want); diff != "" {
				t.Errorf("Last(%d) (-got +want):\n%s", tt.limit, diff)
			}
		})
	}
}

func TestWindowCutsHugeLines(t *testing.T) {
	w := logwindow.New(2)
	w.Add(strings.Repeat("x", logwindow.MaxLineBytes+10))
	if got := len(w.Last(0)[0]); got != logwindow.MaxLineBytes {
		t.Errorf("kept %d bytes, want %d", got, logwindow.MaxLineBytes)
	}
}

func TestSubscribeCollectsEveryService(t *testing.T) {
	nc, err := nats.Connect(natstest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := logwindow.New(10)
	sub, err := logwindow.Subscribe(nc, w)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, m := range []struct{ subject, line string }{
		{"staging.logs.stager", `{"msg":"a"}`},
		{"staging.events.x", `{"msg":"not a log"}`},
		{"staging.logs.audit", `{"msg":"b"}`},
	} {
		if err := nc.Publish(m.subject, []byte(m.line)); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{`{"msg":"a"}`, `{"msg":"b"}`}
	testenv.Eventually(t, 5*time.Second, "both log lines in the window", func() bool {
		return len(w.Last(0)) >= len(want)
	})
	if diff := cmp.Diff(w.Last(0), want); diff != "" {
		t.Errorf("window (-got +want):\n%s", diff)
	}
}
