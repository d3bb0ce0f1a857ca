package main

// One scenario, kept in one file: three nats-server processes, the
// services on them, load, the loss of a stream leader, and the checks that
// nothing was lost or duplicated; its helpers serve it alone.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// The system on a 3-node JetStream cluster of the pinned nats-server, three
// processes on loopback, streams at 3 replicas: the all-in-one's gateway,
// stager and audit, and a second stager on a connection of its own. Under
// load (small and large copies), the leader of STAGING_REQUESTS is killed
// (SIGKILL) and its node restarted, then the same for STAGING_EVENTS. Every
// accepted request must end exactly once, succeeded, with its file intact,
// its audit row matching, and nothing half-staged left in the user area.
func TestClusterLosesANodeUnderLoad(t *testing.T) {
	cluster := startCluster(t, 3)
	t.Setenv("STAGING_STREAM_REPLICAS", "3")
	sys := startSystem(t, cluster.urls(), "")
	startSecondStager(t, sys, cluster.urls())

	const small, large, largeSize = 240, 12, 8 << 20
	var items []clusterItem
	for i := range small + large {
		size := 4 << 10
		if i%((small+large)/large) == 0 {
			size = largeSize
		}
		items = append(items, writeSource(t, sys, fmt.Sprintf("cluster/%03d.dat", i), size))
	}

	// Requests go in from a few clients while the nodes are killed.
	ids := make([]string, len(items))
	submitted := make(chan int, len(items))
	var wg sync.WaitGroup
	next := make(chan int, len(items))
	for i := range items {
		next <- i
	}
	close(next)
	for range 6 {
		wg.Go(func() {
			for i := range next {
				ids[i] = submitRetrying(t, sys, items[i], fmt.Sprintf("cluster-%d", i))
				submitted <- i
			}
		})
	}
	// The clients end with the test, even one that fails early: a client
	// still running afterwards would take the process, and the cleanup
	// that stops the nodes, down with it.
	t.Cleanup(wg.Wait)
	waitSubmitted := func(n int) {
		for range n {
			select {
			case <-submitted:
			case <-time.After(2 * time.Minute):
				t.Fatalf("requests not accepted within 2 minutes")
			}
		}
	}

	js := cluster.client(t)
	waitSubmitted(len(items) / 4)
	for _, stream := range []string{contract.StreamRequests, contract.StreamEvents} {
		leader := cluster.leader(t, js, stream)
		killed := time.Now()
		leader.kill(t)
		elected := cluster.waitLeader(t, js, stream, leader)
		t.Logf("killed %s, leader of %s; a new leader after %v", leader.name, stream, elected.Sub(killed).Round(time.Millisecond))
		waitSubmitted(len(items) / 8)
		leader.start(t)
		current := cluster.waitCurrent(t, js)
		t.Logf("restarted %s; every replica current %v after the kill", leader.name, current.Sub(killed).Round(time.Millisecond))
	}
	wg.Wait()
	close(submitted)

	// A command out to a worker when its consumer's leader died comes
	// again only after AckWait (30 s): allow for that.
	began := time.Now()
	records := waitRecorded(t, sys, ids, 2*time.Minute)
	for i, it := range items {
		rec := records[ids[i]]
		if rec.Status != contract.StatusSucceeded || rec.Bytes != it.size {
			t.Errorf("audit row of %s: %s with %d bytes, want succeeded with %d", ids[i], rec.Status, rec.Bytes, it.size)
		}
		target := filepath.Join(sys.cfg.Stager.UserAreaRoot, "alice", filepath.FromSlash(it.target))
		if sum := fileSum(t, target); sum != it.sum {
			t.Errorf("%s: content differs from its source", target)
		}
	}
	t.Logf("%d requests (%d of %d MiB) all recorded %v after the last restart", len(items), large, largeSize>>20, time.Since(began).Round(time.Millisecond))
	// What the services keep in JetStream besides the streams (download
	// links, Idempotency-Keys) survives a node as well.
	for _, name := range []string{"KV_STAGING_DOWNLOADS", "KV_STAGING_IDEMPOTENCY"} {
		if info := streamInfo(t, js, name); info == nil || info.Config.Replicas != 3 {
			t.Errorf("%s: %+v, want 3 replicas", name, info)
		}
	}
	checkTerminalOnce(t, js, ids)
	checkNothingHalfStaged(t, sys, items)
}

// waitRecorded asks the audit for each request until its row has ended,
// within timeout for all of them together, and returns the rows.
func waitRecorded(t *testing.T, sys running, ids []string, timeout time.Duration) map[string]contract.Record {
	t.Helper()
	records := map[string]contract.Record{}
	testenv.Eventually(t, timeout, "every request ended in the audit", func() bool {
		for _, id := range ids {
			if rec, ok := records[id]; ok && rec.Status.Rank() == contract.StatusSucceeded.Rank() {
				continue
			}
			req, _ := json.Marshal(contract.AuditGetRequest{ID: id})
			msg, err := sys.rt.NC.Request(contract.SubjectAuditGet, req, 2*time.Second)
			if err != nil {
				return false
			}
			var reply contract.AuditGetReply
			if json.Unmarshal(msg.Data, &reply) != nil || reply.Record == nil || reply.Record.Status.Rank() != contract.StatusSucceeded.Rank() {
				return false
			}
			records[id] = *reply.Record
		}
		return true
	})
	return records
}

// clusterItem is one request of the load: a source file and its target.
type clusterItem struct {
	source, target string
	size           int64
	sum            [sha256.Size]byte
}

func writeSource(t *testing.T, sys running, rel string, size int) clusterItem {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	path := filepath.Join(sys.cfg.Stager.SourceRoot, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return clusterItem{source: rel, target: "staged/" + rel, size: int64(size), sum: sha256.Sum256(data)}
}

func fileSum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("staged file: %v", err)
		return [sha256.Size]byte{}
	}
	return sha256.Sum256(data)
}

// submitRetrying posts it with an Idempotency-Key until the gateway accepts
// it: while a stream elects a leader the gateway may answer 503, and the
// same key names the same request however often it is sent.
func submitRetrying(t *testing.T, sys running, it clusterItem, key string) string {
	body, _ := json.Marshal(map[string]string{
		"method": "local_copy", "username": "alice", "local_path_on_storage": it.source, "relative_path": it.target,
	})
	deadline := time.Now().Add(90 * time.Second)
	for t.Context().Err() == nil {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sys.httpURL+"/api/v1/stagings", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var sub struct{ ID string }
			derr := json.NewDecoder(resp.Body).Decode(&sub)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted && derr == nil && sub.ID != "" {
				return sub.ID
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			t.Errorf("request %s not accepted within 90 s: %v", key, err)
			return ""
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "" // the test has ended
}

// startSecondStager runs another stager on the same roots and its own
// connection, as a second replica would.
func startSecondStager(t *testing.T, sys running, url string) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	nc, err := bus.Connect(url, "stager-2", log)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sys.cfg.Stager
	cfg.DownloadAddr = ""
	deps := service.Deps{Log: log, NC: nc, JS: js, Registerer: prometheus.NewRegistry(), Tracer: noop.NewTracerProvider(), Health: telemetry.NewHealth()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stager.Run(ctx, cfg, deps) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second stager: %v", err)
		}
		nc.Close()
	})
}

// checkTerminalOnce reads every event and checks that each request has
// exactly one terminal event.
func checkTerminalOnce(t *testing.T, js jetstream.JetStream, ids []string) {
	t.Helper()
	var terminal map[string]int
	var err error
	// Read again from the start if the cluster interrupts the reading.
	testenv.Eventually(t, time.Minute, "every event read", func() bool {
		terminal, err = terminalEvents(t.Context(), js)
		return err == nil
	})
	for _, id := range ids {
		if terminal[id] != 1 {
			t.Errorf("request %s has %d terminal events, want 1", id, terminal[id])
		}
	}
}

// terminalEvents counts the terminal events of each request. Through
// Messages, which pulls again when it finds no responder: on a cluster, a
// Next right after the ordered consumer's creation found none every time
// (the consumer not yet running on its node).
func terminalEvents(ctx context.Context, js jetstream.JetStream) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, contract.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{contract.SubjectEventsAll}})
	if err != nil {
		return nil, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, err
	}
	terminal := map[string]int{}
	it, err := c.Messages()
	if err != nil {
		return nil, err
	}
	defer it.Stop()
	for n := info.NumPending; n > 0; n-- {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("reading the events: %w", err)
		}
		var ev contract.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			return nil, err
		}
		if ev.Type.Terminal() {
			terminal[ev.RequestID]++
		}
	}
	return terminal, nil
}

// checkNothingHalfStaged checks that the user area holds the targets and
// nothing else: no temporary copy was left behind.
func checkNothingHalfStaged(t *testing.T, sys running, items []clusterItem) {
	t.Helper()
	want := map[string]bool{}
	for _, it := range items {
		want[filepath.Join("alice", filepath.FromSlash(it.target))] = true
	}
	root := sys.cfg.Stager.UserAreaRoot
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if !want[rel] {
			t.Errorf("the user area holds %s, which no request staged", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// natsCluster is a JetStream cluster of nats-server processes on loopback.
type natsCluster struct{ nodes []*natsNode }

// natsNode is one server of the cluster; it keeps its ports and store
// across restarts.
type natsNode struct {
	name, bin, dir         string
	client, route, monitor int
	routes                 []string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

func startCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	bin := natstest.ServerBinary(t)
	c := &natsCluster{}
	var routes []string
	for i := range n {
		node := &natsNode{name: fmt.Sprintf("n%d", i+1), bin: bin, dir: t.TempDir(), client: testenv.FreePort(t), route: testenv.FreePort(t), monitor: testenv.FreePort(t)}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", node.route))
		c.nodes = append(c.nodes, node)
	}
	for _, node := range c.nodes {
		node.routes = routes
		node.start(t)
	}
	t.Cleanup(func() {
		for _, node := range c.nodes {
			node.kill(t)
		}
	})
	// Healthy in full once the cluster has elected its meta leader.
	for _, node := range c.nodes {
		testenv.Eventually(t, time.Minute, node.name+" healthy in the cluster", func() bool {
			return node.healthy("")
		})
	}
	return c
}

// start starts the node (again, on its store) and waits until it answers.
func (n *natsNode) start(t *testing.T) {
	t.Helper()
	conf := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream { store_dir: %q }
cluster {
  name: staging-test
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, n.name, n.client, n.monitor, filepath.Join(n.dir, "js"), n.route, strings.Join(n.routes, ", "))
	path := filepath.Join(n.dir, "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(n.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	n.cmd = exec.Command(n.bin, "-c", path)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() {
		n.cmd.Wait()
		close(n.exited)
	}()
	testenv.Eventually(t, 30*time.Second, n.name+" answering", func() bool {
		return n.healthy("?js-enabled-only=true")
	})
}

// healthy reports whether the node's /healthz with query answers 200.
func (n *natsNode) healthy(query string) bool {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz%s", n.monitor, query))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill ends the node at once (SIGKILL), as a crashed machine would.
func (n *natsNode) kill(t *testing.T) {
	t.Helper()
	select {
	case <-n.exited:
		return
	default:
	}
	if err := n.cmd.Process.Kill(); err != nil {
		t.Errorf("kill %s: %v", n.name, err)
	}
	<-n.exited
}

func (c *natsCluster) urls() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.client))
	}
	return strings.Join(urls, ",")
}

// client is the test's own connection to the cluster.
func (c *natsCluster) client(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := bus.Connect(c.urls(), "cluster-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func (c *natsCluster) leader(t *testing.T, js jetstream.JetStream, stream string) *natsNode {
	t.Helper()
	var leader *natsNode
	testenv.Eventually(t, 30*time.Second, "a leader of "+stream, func() bool {
		info := streamInfo(t, js, stream)
		for _, n := range c.nodes {
			if info != nil && info.Cluster != nil && info.Cluster.Leader == n.name {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// waitLeader waits for stream to have a leader other than old and returns
// when it was seen.
func (c *natsCluster) waitLeader(t *testing.T, js jetstream.JetStream, stream string, old *natsNode) time.Time {
	t.Helper()
	testenv.Eventually(t, time.Minute, "a new leader of "+stream, func() bool {
		info := streamInfo(t, js, stream)
		return info != nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != old.name
	})
	return time.Now()
}

// waitCurrent waits until both streams have a leader and every other
// replica is current, and returns when that was seen.
func (c *natsCluster) waitCurrent(t *testing.T, js jetstream.JetStream) time.Time {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, "every replica current", func() bool {
		for _, stream := range []string{contract.StreamRequests, contract.StreamEvents} {
			info := streamInfo(t, js, stream)
			if info == nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != len(c.nodes)-1 {
				return false
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current || r.Offline {
					return false
				}
			}
		}
		return true
	})
	return time.Now()
}

// streamInfo is the stream's info, nil while the cluster cannot answer.
func streamInfo(t *testing.T, js jetstream.JetStream, stream string) *jetstream.StreamInfo {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil
	}
	return info
}
