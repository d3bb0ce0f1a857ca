package telemetry_test

import (
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/telemetry"
)

func TestLogPublisherPublishesRecords(t *testing.T) {
	url := natstest.Start(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(contract.SubjectLogsAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	pub := telemetry.NewLogPublisher("stager", 0)
	log, closer, err := telemetry.NewLogger(io.MultiWriter(io.Discard, pub), telemetry.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	// Written before Attach: waits in the buffer.
	log.Info("before_attach", "n", 1)
	pub.Attach(nc)
	defer pub.Close()
	log.Info("after_attach", "n", 2)

	var got []string
	for range 2 {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if msg.Subject != "staging.logs.stager" {
			t.Errorf("subject %q, want staging.logs.stager", msg.Subject)
		}
		var rec struct {
			Msg string `json:"msg"`
			N   int    `json:"n"`
		}
		if err := json.Unmarshal(msg.Data, &rec); err != nil {
			t.Fatalf("record %q: %v", msg.Data, err)
		}
		if len(msg.Data) > 0 && msg.Data[len(msg.Data)-1] == '\n' {
			t.Errorf("record %q keeps its newline", msg.Data)
		}
		got = append(got, rec.Msg)
	}
	if diff := cmp.Diff(got, []string{"before_attach", "after_attach"}); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	if d := pub.Dropped(); d != 0 {
		t.Errorf("dropped %d, want 0", d)
	}
}

func TestLogPublisherNeverBlocks(t *testing.T) {
	tests := []struct {
		name string
		// attach returns the connection to attach, or nil for none.
		attach      func(t *testing.T) *nats.Conn
		writes      int
		wantDropped uint64
	}{
		{"not attached, buffer full", func(*testing.T) *nats.Conn { return nil }, 10, 7},
		{"connection closed", func(t *testing.T) *nats.Conn {
			nc, err := nats.Connect(natstest.Start(t))
			if err != nil {
				t.Fatal(err)
			}
			nc.Close()
			return nc
		}, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := telemetry.NewLogPublisher("audit", 3)
			if nc := tt.attach(t); nc != nil {
				pub.Attach(nc)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range tt.writes {
					if n, err := pub.Write([]byte("{\"msg\":\"x\"}\n")); n != 11+1 || err != nil {
						t.Errorf("Write = %d, %v; want 12, nil", n, err)
					}
				}
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Write blocked")
			}
			// The publishing goroutine drops what it takes; poll until it
			// has taken everything it will.
			deadline := time.Now().Add(5 * time.Second)
			for pub.Dropped() < tt.wantDropped && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			pub.Close()
			if got := pub.Dropped(); got != tt.wantDropped {
				t.Errorf("dropped %d, want %d", got, tt.wantDropped)
			}
		})
	}
}
