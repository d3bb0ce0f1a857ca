package main

// The bare flow is a baseline service of its own (the least the contract
// asks, written plainly), so it is one file, like the service it stands for.

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natsembed"
	"github.com/skao/skao-staging/libs/testenv"
)

// The bare flow is the gateway benchmark's baseline: the least work the
// contract asks of a seed-API local_copy, written plainly with the same
// libraries, in a process of its own. Per request it sends the same NATS
// messages as the all-in-one (a queued event and a command with its
// Nats-Msg-Id, a started and a succeeded event, the command's ack, every
// event consumed and acknowledged by an audit consumer after its batch
// commits to SQLite in WAL mode with synchronous=FULL), copies the 4 KiB
// file into a new read-only file renamed into place, and answers the
// seed's JSON. It leaves out everything else the services do: validation,
// authentication, tracing, metrics, logs, progress, checksums, and the
// stager's flush of each copy to disk (so it does less than the durable
// copy the stager reports). What the all-in-one reaches is compared with
// it in the same run: the ratio is the cost of the services' own work, and
// the bare flow's rate is a ceiling for this machine.

var bareBanner = regexp.MustCompile(`bare flow is running: (http://\S+)`)

// startBareFlow runs TestBareFlowServer of this test binary as a process
// on dir (storage/ and user_area/ as the all-in-one lays them out) and
// waits for its banner.
func startBareFlow(t *testing.T, dir string) benchTarget {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBareFlowServer$", "-test.v")
	cmd.Env = append(os.Environ(), "STAGING_BARE_DIR="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stop := startProcess(t, cmd, filepath.Join(dir, "bareflow.log"))
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := bareBanner.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case u := <-found:
		return benchTarget{httpURL: u, dataDir: dir, pid: cmd.Process.Pid, stop: stop}
	case <-time.After(60 * time.Second):
		stop()
		t.Fatal("the bare flow printed no banner within 60 s")
	}
	return benchTarget{}
}

// TestBareFlowServer is the bare flow's process (see startBareFlow): it
// serves until SIGTERM.
func TestBareFlowServer(t *testing.T) {
	dir := os.Getenv("STAGING_BARE_DIR")
	if dir == "" {
		t.Skip("the gateway benchmark's baseline process: started by TestGatewayBench")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := runBareFlow(ctx, dir, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

func runBareFlow(ctx context.Context, dir string, banner io.Writer) error {
	srv, err := natsembed.Start(natsembed.Options{Host: "127.0.0.1", Port: -1, StoreDir: filepath.Join(dir, "bare-nats"), ServerName: "bare"})
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{EventsMaxAge: time.Hour, Replicas: 1}); err != nil {
		return err
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, "bare-audit.db")+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE requests (id TEXT PRIMARY KEY, username TEXT, status TEXT);
		CREATE TABLE events (id TEXT PRIMARY KEY, request_id TEXT, type TEXT, data BLOB)`); err != nil {
		return err
	}
	f := &bareFlow{js: js, db: db, storage: filepath.Join(dir, "storage"), userArea: filepath.Join(dir, "user_area"), waiting: map[string]chan contract.Event{}}
	if f.insertEvent, err = db.Prepare(bareInsertEvent); err != nil {
		return err
	}
	if f.upsertRequest, err = db.Prepare(bareUpsertRequest); err != nil {
		return err
	}
	sub, err := nc.Subscribe(contract.SubjectEventsAll, f.deliver)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	stopWorker, err := f.startWorker(ctx)
	if err != nil {
		return err
	}
	defer stopWorker()
	auditErr := make(chan error, 1)
	go func() { auditErr <- f.audit(ctx) }()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stage_data", f.stage)
	mux.HandleFunc("GET /audited", f.audited)
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	fmt.Fprintf(banner, "bare flow is running: http://%s\n", ln.Addr())
	select {
	case <-ctx.Done():
		return hs.Close()
	case err := <-auditErr:
		hs.Close()
		return fmt.Errorf("bare flow audit: %w", err)
	}
}

type bareFlow struct {
	js                         jetstream.JetStream
	db                         *sql.DB
	insertEvent, upsertRequest *sql.Stmt
	storage, userArea          string

	mu      sync.Mutex
	waiting map[string]chan contract.Event
}

func (f *bareFlow) publishEvent(ctx context.Context, cmd contract.Command, t contract.EventType, source string) error {
	ev := contract.EventFor(cmd, t)
	ev.ID, ev.Time, ev.Source = uuid.NewString(), time.Now().UTC(), source
	if t == contract.EventSucceeded {
		ev.Outcome, ev.Bytes, ev.Files = contract.OutcomeStaged, benchFileSize, 1
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = f.js.Publish(ctx, contract.EventSubject(cmd.ID), data, jetstream.WithMsgID(ev.ID))
	return err
}

// stage is POST /stage_data: publish, then wait for the terminal event.
func (f *bareFlow) stage(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Source string `json:"local_path_on_storage"`
		Target string `json:"relative_path"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	q := r.URL.Query()
	cmd := contract.Command{SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: contract.Method(q.Get("method")),
		Username: q.Get("username"), LocalPathOnStorage: body.Source, RelativePath: body.Target, Origin: "gateway", RequestedAt: time.Now().UTC()}
	done := make(chan contract.Event, 1)
	f.mu.Lock()
	f.waiting[cmd.ID] = done
	f.mu.Unlock()
	defer func() { f.mu.Lock(); delete(f.waiting, cmd.ID); f.mu.Unlock() }()
	data, err := json.Marshal(cmd)
	if err == nil {
		err = f.publishEvent(r.Context(), cmd, contract.EventQueued, "gateway")
	}
	if err == nil {
		_, err = f.js.Publish(r.Context(), contract.RequestSubject(cmd.Method), data, jetstream.WithMsgID(cmd.ID))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	var ev contract.Event
	select {
	case ev = <-done:
	case <-r.Context().Done(): // the client gave up
		return
	}
	if ev.Type != contract.EventSucceeded {
		http.Error(w, ev.Message, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"status": "success", "message": "staged " + cmd.RelativePath})
}

// deliver hands terminal events to the requests waiting for them.
func (f *bareFlow) deliver(m *nats.Msg) {
	var ev contract.Event
	if json.Unmarshal(m.Data, &ev) != nil || !ev.Type.Terminal() {
		return
	}
	f.mu.Lock()
	done := f.waiting[ev.RequestID]
	f.mu.Unlock()
	select {
	case done <- ev:
	default: // nobody waits, or a repeated event
	}
}

// startWorker consumes commands, 32 at a time, as the stager does.
func (f *bareFlow) startWorker(ctx context.Context) (func(), error) {
	const slots = 32
	cons, err := f.js.CreateOrUpdateConsumer(ctx, contract.StreamRequests, jetstream.ConsumerConfig{
		Durable: "bare-stager", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: slots,
		FilterSubject: contract.RequestSubject(contract.MethodLocalCopy),
	})
	if err != nil {
		return nil, err
	}
	work := make(chan jetstream.Msg)
	cc, err := cons.Consume(func(m jetstream.Msg) { work <- m }, jetstream.PullMaxMessages(slots))
	if err != nil {
		return nil, err
	}
	for range slots {
		go func() {
			for m := range work {
				f.handle(ctx, m)
			}
		}()
	}
	return func() {
		cc.Stop()
		<-cc.Closed() // no callback sends on work any more
		close(work)
	}, nil
}

func (f *bareFlow) handle(ctx context.Context, m jetstream.Msg) {
	var cmd contract.Command
	if err := json.Unmarshal(m.Data(), &cmd); err != nil {
		_ = m.Term()
		return
	}
	outcome := contract.EventSucceeded
	err := f.publishEvent(ctx, cmd, contract.EventStarted, "stager")
	if err == nil {
		if cerr := f.copy(cmd); cerr != nil {
			outcome = contract.EventFailed
		}
		err = f.publishEvent(ctx, cmd, outcome, "stager")
	}
	if err != nil {
		_ = m.Nak()
		return
	}
	_ = m.Ack()
}

// copy copies the source into a new 0400 file next to the target and
// renames it into place.
func (f *bareFlow) copy(cmd contract.Command) error {
	target := filepath.Join(f.userArea, cmd.Username, cmd.RelativePath)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	src, err := os.Open(filepath.Join(f.storage, cmd.LocalPathOnStorage))
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := target + ".tmp-" + cmd.ID
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, target)
	}
	return err
}

// audit writes every event in batches, one transaction each, and
// acknowledges a batch's events once it commits.
func (f *bareFlow) audit(ctx context.Context) error {
	cons, err := f.js.CreateOrUpdateConsumer(ctx, contract.StreamEvents, jetstream.ConsumerConfig{
		Durable: "bare-audit", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 20000,
		FilterSubject: contract.SubjectEventsAll,
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(2000, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			continue
		}
		var msgs []jetstream.Msg
		tx, err := f.db.Begin()
		if err != nil {
			return err
		}
		insertEvent, upsertRequest := tx.Stmt(f.insertEvent), tx.Stmt(f.upsertRequest)
		for m := range batch.Messages() {
			if err := writeBareEvent(insertEvent, upsertRequest, m.Data()); err != nil {
				tx.Rollback()
				return err
			}
			msgs = append(msgs, m)
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		for _, m := range msgs {
			_ = m.Ack()
		}
	}
	return nil
}

// writeBareEvent stores one event and moves its request's row forward.
func writeBareEvent(insertEvent, upsertRequest *sql.Stmt, data []byte) error {
	var ev contract.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return err
	}
	if _, err := insertEvent.Exec(ev.ID, ev.RequestID, ev.Type, data); err != nil {
		return err
	}
	_, err := upsertRequest.Exec(ev.RequestID, ev.Username, ev.Type.Status())
	return err
}

// The bare audit's two statements, prepared once.
const (
	bareInsertEvent   = `INSERT INTO events (id, request_id, type, data) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`
	bareUpsertRequest = `INSERT INTO requests (id, username, status) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status
		WHERE excluded.status <> 'queued' AND requests.status <> 'succeeded'`
)

// audited is GET /audited?username=: how many of the user's requests the
// audit holds as succeeded.
func (f *bareFlow) audited(w http.ResponseWriter, r *http.Request) {
	var n int
	if err := f.db.QueryRow(`SELECT count(*) FROM requests WHERE username = ? AND status = 'succeeded'`, r.URL.Query().Get("username")).Scan(&n); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprint(w, n)
}

// checkBareAudit waits until the bare flow's audit holds n succeeded
// requests of user.
func checkBareAudit(t *testing.T, client *http.Client, base, user string, n int) {
	t.Helper()
	got := ""
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("the bare flow's audit to record %d succeeded requests of %s", n, user), func() bool {
		resp, err := client.Get(base + "/audited?username=" + user)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got = strings.TrimSpace(string(b))
		return got == fmt.Sprint(n)
	}, func() string { return got })
}

// bareStep is one step of seed requests through the bare flow, checked
// as the all-in-one's are: every copy in place, every request audited.
func bareStep(t *testing.T, client *http.Client, bare benchTarget, user string, concurrency, first, n int) benchResult {
	t.Helper()
	cpu0 := processCPU(t, bare.pid)
	elapsed, lat := runStep(t, client, bare, "seed", user, concurrency, first, n)
	cpu := processCPU(t, bare.pid) - cpu0
	checkCopies(t, bare.dataDir, user, n)
	checkBareAudit(t, client, bare.httpURL, user, n)
	return benchResult{mode: "bare", concurrency: concurrency, requests: n, elapsed: elapsed,
		p50: percentile(lat, 50), p99: percentile(lat, 99), hwm: peakRSS(t, bare.pid), cpu: cpu}
}
