package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// With authentication on, the embedded NATS server, reached over TCP as
// another user of the machine would, lets in only a client holding the
// generated key file, which is the service account's alone and named in
// the banner; the system itself keeps working.
func TestEmbeddedNATSClosedWhenAuthOn(t *testing.T) {
	sys := startClosedSystem(t)

	keyFile := sys.natsKey
	if keyFile == "" || filepath.Dir(keyFile) != sys.layout.Dir {
		t.Fatalf("NATS key file = %q, want one in the data directory %s", keyFile, sys.layout.Dir)
	}
	for file, want := range map[string]os.FileMode{keyFile: 0o600, sys.layout.Dir: 0o700} {
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", file, fi.Mode().Perm(), err, want)
		}
	}
	var banner strings.Builder
	printBanner(&banner, sys.system)
	if !strings.Contains(banner.String(), keyFile) {
		t.Errorf("banner does not name the NATS key file %s:\n%s", keyFile, banner.String())
	}

	// The system works: a direct_download through the gateway issues a link.
	issued := sys.issueSampleLink(t)
	id, _ := issued["id"].(string)
	link, _ := issued["download_url"].(string)
	if link == "" {
		t.Fatal("the succeeded direct_download has no download_url")
	}
	token := path.Base(link)

	t.Run("refused without the key", func(t *testing.T) {
		stranger, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		strangerPub, _ := stranger.PublicKey()
		for name, opts := range map[string][]nats.Option{
			"no credentials":        nil,
			"the in-process user":   {nats.UserInfo("in-process", "")},
			"another user's nkey":   {nats.Nkey(strangerPub, stranger.Sign)},
			"a made-up user and pw": {nats.UserInfo("admin", "admin")},
		} {
			nc, err := nats.Connect(sys.natsURL, opts...)
			if err == nil {
				nc.Close()
				t.Errorf("%s: connected, want refused", name)
			} else if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("%s: %v, want %v", name, err, nats.ErrAuthorization)
			}
		}
		// Nor does a client that sends its requests without waiting for
		// the server's verdict get an answer.
		got := pipelinedRequests(t, sys.natsURL,
			contract.SubjectAuditList, `{"username":"alice"}`,
			"$JS.API.DIRECT.GET.KV_STAGING_DOWNLOADS.$KV.STAGING_DOWNLOADS."+token, "")
		if !strings.Contains(got, "Authorization Violation") || strings.Contains(got, "MSG ") {
			t.Errorf("server answered a client without credentials:\n%s", got)
		}
	})

	t.Run("open with the key file", func(t *testing.T) {
		key, err := nats.NkeyOptionFromSeed(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(sys.natsURL, key)
		if err != nil {
			t.Fatalf("connect with %s: %v", keyFile, err)
		}
		defer nc.Close()
		req, _ := json.Marshal(contract.AuditListRequest{Username: "alice"})
		var list contract.AuditListReply
		testenv.Eventually(t, 20*time.Second, "the audit to list "+id, func() bool {
			msg, err := nc.Request(contract.SubjectAuditList, req, 2*time.Second)
			list = contract.AuditListReply{}
			return err == nil && json.Unmarshal(msg.Data, &list) == nil &&
				slices.ContainsFunc(list.Items, func(r contract.Record) bool { return r.ID == id })
		}, func() string { return jsonText(list) })
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := js.KeyValue(t.Context(), "STAGING_DOWNLOADS")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Get(t.Context(), token); err != nil {
			t.Errorf("download link %s in the key-value store: %v", token, err)
		}
	})
}

// pipelinedRequests speaks the NATS protocol over TCP as a client without
// credentials that sends requests (subject, payload pairs) right behind its
// CONNECT, and returns everything the server sent until it hung up.
func pipelinedRequests(t *testing.T, url string, subjectsAndPayloads ...string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	out := "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB _INBOX.outsider.* 1\r\n"
	for i := 0; i+1 < len(subjectsAndPayloads); i += 2 {
		subject, payload := subjectsAndPayloads[i], subjectsAndPayloads[i+1]
		out += "PUB " + subject + " _INBOX.outsider." + strconv.Itoa(i) + " " + strconv.Itoa(len(payload)) + "\r\n" + payload + "\r\n"
	}
	out += "PING\r\n"
	if _, err := io.WriteString(conn, out); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r) // until the server closes the connection
	return string(got)
}

// The key file is made once and kept: a restart opens the server to the
// same key, so tools set up with it keep working.
func TestNATSKeyFileIsKept(t *testing.T) {
	file := filepath.Join(t.TempDir(), "nats-admin.nk")
	first, err := loadOrCreateNkey(file)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		t.Fatalf("%s does not hold an nkey seed: %v", file, err)
	}
	if pub, _ := kp.PublicKey(); pub != first || !nkeys.IsValidPublicUserKey(pub) {
		t.Errorf("seed's public key = %s, want the user key %s", pub, first)
	}
	again, err := loadOrCreateNkey(file)
	if err != nil || again != first {
		t.Errorf("second start: key %s (%v), want the first one %s", again, err, first)
	}
}

func TestNATSKeyFileRefused(t *testing.T) {
	dir := t.TempDir()
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"readable by others", userSeed, 0o644, "mode 0644"},
		{"readable by the group", userSeed, 0o640, "mode 0640"},
		{"not a seed", []byte("hello\n"), 0o600, "delete the file"},
		{"an account's seed", accountSeed, 0o600, "not a user nkey seed"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, strconv.Itoa(i))
			if err := os.WriteFile(file, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(file, tt.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			if _, err := loadOrCreateNkey(file); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadOrCreateNkey = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// With authentication on, a data directory others could enter is made the
// service account's alone, and the banner says so.
func TestDataDirMadePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // past the umask
		t.Fatal(err)
	}
	l, err := newLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	notice, err := l.prepare(true)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode = %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	if !strings.Contains(notice, dir) || !strings.Contains(notice, "0755") {
		t.Errorf("notice = %q, want it to name %s and its old mode 0755", notice, dir)
	}
	if notice, err := l.prepare(true); err != nil || notice != "" {
		t.Errorf("second prepare = %q, %v; want no notice", notice, err)
	}
}

// startClosedSystem starts the all-in-one with authentication on (alice's
// bearer token set), so its embedded NATS server takes only the generated
// key file.
func startClosedSystem(t *testing.T) running {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("alice-secret alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startSystem(t, "", "", "-auth-mode", "tokens", "-auth-tokens-file", tokens)
	sys.bearer = "alice-secret"
	return sys
}

// issueSampleLink stages a direct_download of the sample file for alice
// through the gateway and returns the request's state once it succeeded.
func (s running) issueSampleLink(t *testing.T) map[string]any {
	t.Helper()
	var sub struct {
		ID string `json:"id"`
	}
	if status := s.postJSON(t, "/api/v1/stagings", map[string]string{
		"method": "direct_download", "username": "alice",
		"local_path_on_storage": sampleFile, "relative_path": "hello.txt",
	}, &sub); status != http.StatusAccepted || sub.ID == "" {
		t.Fatalf("POST /api/v1/stagings = %d %+v, want 202 with an id", status, sub)
	}
	return s.waitStatus(t, sub.ID, "succeeded")
}
