package bus_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// The queue metrics read the work queue as the server has it: commands per
// method and the age of the oldest, and for each durable consumer what it
// has not delivered, what is out, what is out again, and its pull requests.
func TestQueueMetrics(t *testing.T) {
	nc, js := setup(t)
	reg := prometheus.NewRegistry()
	if err := bus.RegisterQueueMetrics(reg, js, quiet, 0); err != nil {
		t.Fatal(err)
	}
	cons, err := bus.EnsureConsumer(t.Context(), js, bus.ConsumerOptions{
		Stream: contract.StreamRequests, Durable: "stager", FilterSubjects: contract.RequestSubjects(contract.MethodLocalCopy),
		AckWait: time.Minute, MaxDeliver: 5, MaxAckPending: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []contract.Method{contract.MethodLocalCopy, contract.MethodLocalCopy, contract.MethodLocalCopy, contract.MethodJupyterCopy} {
		cmd := command(uuid.NewString())
		cmd.Method = m
		if err := bus.PublishCommand(t.Context(), js, cmd); err != nil {
			t.Fatal(err)
		}
	}
	// One command delivered, refused, and delivered again: out, redelivered.
	for i := range 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// A Nak the server confirms (as DoubleAck does for an Ack),
			// so that it is in before the next pull.
			if _, err := nc.Request(msg.Reply(), []byte("-NAK"), 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}

	got := gather(t, reg)
	for _, m := range []string{"local_copy", "jupyter_copy"} {
		key := `staging_queue_oldest_command_age_seconds{method="` + m + `"}`
		if got[key] <= 0 || got[key] > 60 {
			t.Errorf("%s = %v, want the seconds since the test published", key, got[key])
		}
		delete(got, key)
	}
	want := map[string]float64{
		`staging_queue_up`: 1,
		`staging_stream_messages{stream="STAGING_REQUESTS"}`:                                 4,
		`staging_stream_messages{stream="STAGING_EVENTS"}`:                                   0,
		`staging_stream_bytes{stream="STAGING_EVENTS"}`:                                      0,
		`staging_queue_commands{method="local_copy"}`:                                        3,
		`staging_queue_commands{method="jupyter_copy"}`:                                      1,
		`staging_queue_commands{method="local_symlink"}`:                                     0,
		`staging_queue_commands{method="local_hardlink"}`:                                    0,
		`staging_queue_commands{method="direct_download"}`:                                   0,
		`staging_queue_oldest_command_age_seconds{method="local_symlink"}`:                   0,
		`staging_queue_oldest_command_age_seconds{method="local_hardlink"}`:                  0,
		`staging_queue_oldest_command_age_seconds{method="direct_download"}`:                 0,
		`staging_queue_active_consumers{method="local_copy"}`:                                1,
		`staging_queue_active_consumers{method="jupyter_copy"}`:                              0,
		`staging_queue_active_consumers{method="local_symlink"}`:                             0,
		`staging_queue_active_consumers{method="local_hardlink"}`:                            0,
		`staging_queue_active_consumers{method="direct_download"}`:                           0,
		`staging_consumer_pending_messages{consumer="stager",stream="STAGING_REQUESTS"}`:     2,
		`staging_consumer_ack_pending_messages{consumer="stager",stream="STAGING_REQUESTS"}`: 1,
		`staging_consumer_max_ack_pending{consumer="stager",stream="STAGING_REQUESTS"}`:      7,
		`staging_consumer_redelivered_messages{consumer="stager",stream="STAGING_REQUESTS"}`: 1,
		`staging_consumer_waiting_pulls{consumer="stager",stream="STAGING_REQUESTS"}`:        0,
	}
	bytes := `staging_stream_bytes{stream="STAGING_REQUESTS"}`
	if got[bytes] <= 0 {
		t.Errorf("%s = %v, want the commands' size", bytes, got[bytes])
	}
	delete(got, bytes)
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("queue metrics (-got +want):\n%s", diff)
	}
}

// A server that does not answer leaves the queue metrics out and says so,
// without failing the scrape.
func TestQueueMetricsWithoutServer(t *testing.T) {
	nc, js := setup(t)
	reg := prometheus.NewRegistry()
	if err := bus.RegisterQueueMetrics(reg, js, quiet, time.Second); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if diff := cmp.Diff(gather(t, reg), map[string]float64{"staging_queue_up": 0}); diff != "" {
		t.Errorf("queue metrics (-got +want):\n%s", diff)
	}
}

// gather is every series of reg as name{labels} -> value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := f.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						key += ","
					}
					key += l.GetName() + `="` + l.GetValue() + `"`
				}
				key += "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}
