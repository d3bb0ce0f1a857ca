package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/testenv"
)

// A wrong NATS credentials setting stops the start before any connection,
// with an error naming the setting and the file, and never the seed.
func TestNATSCredentialsRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	user := newUser(t)
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()
	other := newUser(t)
	creds := writeFile(t, dir, "user.creds", userCreds(t, newAccount(t), user))
	mismatched := writeFile(t, dir, "mismatched.creds", []byte(strings.Replace(
		string(userCreds(t, newAccount(t), user)), string(user.seed), string(other.seed), 1)))
	seedFile := writeFile(t, dir, "user.nk", user.seed)
	tests := []struct {
		name        string
		nkey, creds string
		want        []string
	}{
		{"both set", seedFile, creds, []string{"STAGING_NATS_NKEY_FILE", "STAGING_NATS_CREDS_FILE", "both"}},
		{"nkey file missing", filepath.Join(dir, "absent.nk"), "", []string{"STAGING_NATS_NKEY_FILE", "absent.nk", "no such file"}},
		{"nkey file not a seed", writeFile(t, dir, "hello.nk", []byte("hello\n")), "", []string{"STAGING_NATS_NKEY_FILE", "hello.nk"}},
		{"nkey file an account seed", writeFile(t, dir, "account.nk", accountSeed), "", []string{"STAGING_NATS_NKEY_FILE", "account.nk", "user"}},
		{"creds file missing", "", filepath.Join(dir, "absent.creds"), []string{"STAGING_NATS_CREDS_FILE", "absent.creds", "no such file"}},
		{"creds file a bare seed", "", seedFile, []string{"STAGING_NATS_CREDS_FILE", "user.nk", "no user JWT"}},
		{"creds file not creds", "", writeFile(t, dir, "hello.creds", []byte("hello\n")), []string{"STAGING_NATS_CREDS_FILE", "hello.creds", "no user nkey seed"}},
		{"creds file with another user's seed", "", mismatched, []string{"STAGING_NATS_CREDS_FILE", "mismatched.creds", "not that of the user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Nothing listens there: without the check the error would
			// be a connection failure naming no setting.
			base := service.Base{NATSURL: "nats://127.0.0.1:1", NATSNkeyFile: tt.nkey, NATSCredsFile: tt.creds}
			rt, err := service.Start(t.Context(), "test", base, io.Discard)
			if err == nil {
				rt.Close(context.Background())
				t.Fatal("Start succeeded, want a configuration error")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Start = %v, want an error saying %q", err, want)
				}
			}
			for _, seed := range [][]byte{user.seed, other.seed, accountSeed} {
				if strings.Contains(err.Error(), string(seed)) {
					t.Errorf("the error shows a seed: %v", err)
				}
			}
		})
	}
}

// A site's nats-server granting a user by nkey lets a service in with
// STAGING_NATS_NKEY_FILE, and refuses it without the file or with another
// user's, saying which setting to look at.
func TestNATSNkeyFileOnServer(t *testing.T) {
	user := newUser(t)
	url := natstest.StartProcess(t, fmt.Sprintf("authorization { users: [ { nkey: %s } ] }", user.pub))
	dir := t.TempDir()
	seedFile := writeFile(t, dir, "user.nk", user.seed)

	logs := &testenv.Buffer{}
	connected(t, service.Base{NATSURL: url, NATSNkeyFile: seedFile}, logs)
	if strings.Contains(logs.String(), string(user.seed)) {
		t.Errorf("the logs show the seed:\n%s", logs)
	}

	refused(t, service.Base{NATSURL: url}, "STAGING_NATS_NKEY_FILE")
	other := writeFile(t, dir, "other.nk", newUser(t).seed)
	refused(t, service.Base{NATSURL: url, NATSNkeyFile: other}, "refused the nkey of STAGING_NATS_NKEY_FILE "+other)
}

// A site's nats-server in operator mode, its users issued as .creds files,
// lets a service in with STAGING_NATS_CREDS_FILE, and refuses it without
// the file or with the credentials of an account it does not know.
func TestNATSCredsFileOnServer(t *testing.T) {
	op := newOperator(t)
	sys, acc := newAccount(t), newAccount(t)
	acc.claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	url := natstest.StartProcess(t, fmt.Sprintf(`operator: %s
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %s
  %s: %s
}`, op.jwt, sys.pub, sys.pub, sys.encode(t, op), acc.pub, acc.encode(t, op)))
	dir := t.TempDir()
	user := newUser(t)
	creds := writeFile(t, dir, "user.creds", userCreds(t, acc, user))

	logs := &testenv.Buffer{}
	connected(t, service.Base{NATSURL: url, NATSCredsFile: creds}, logs)
	if strings.Contains(logs.String(), string(user.seed)) {
		t.Errorf("the logs show the seed:\n%s", logs)
	}

	refused(t, service.Base{NATSURL: url}, "STAGING_NATS_CREDS_FILE")
	stranger := writeFile(t, dir, "stranger.creds", userCreds(t, newAccount(t), newUser(t)))
	refused(t, service.Base{NATSURL: url, NATSCredsFile: stranger}, "refused the credentials of STAGING_NATS_CREDS_FILE "+stranger)
}

// connected starts a runtime with base and checks it reached JetStream:
// the streams are in place.
func connected(t *testing.T, base service.Base, logs io.Writer) {
	t.Helper()
	rt, err := service.Start(t.Context(), "test", base, logs)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer rt.Close(context.Background())
	if _, err := rt.JS.Stream(t.Context(), contract.StreamRequests); err != nil {
		t.Errorf("stream %s: %v", contract.StreamRequests, err)
	}
}

// refused checks that a runtime with base is refused by the server, with
// an error saying want.
func refused(t *testing.T, base service.Base, want string) {
	t.Helper()
	rt, err := service.Start(t.Context(), "test", base, io.Discard)
	if err == nil {
		rt.Close(context.Background())
		t.Fatalf("Start with %+v connected, want refused", base)
	}
	if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), want) {
		t.Errorf("Start = %v, want %v saying %q", err, nats.ErrAuthorization, want)
	}
}

type userKey struct {
	kp   nkeys.KeyPair
	pub  string
	seed []byte
}

func newUser(t *testing.T) userKey {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return userKey{kp: kp, pub: pub, seed: seed}
}

type operator struct {
	kp  nkeys.KeyPair
	jwt string
}

func newOperator(t *testing.T) operator {
	t.Helper()
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	token, err := jwt.NewOperatorClaims(pub).Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	return operator{kp: kp, jwt: token}
}

type account struct {
	kp     nkeys.KeyPair
	pub    string
	claims *jwt.AccountClaims
}

func newAccount(t *testing.T) account {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return account{kp: kp, pub: pub, claims: jwt.NewAccountClaims(pub)}
}

// encode is the account's JWT, signed by op.
func (a account) encode(t *testing.T, op operator) string {
	t.Helper()
	token, err := a.claims.Encode(op.kp)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// userCreds is a .creds file of u in account a, as nsc writes one.
func userCreds(t *testing.T, a account, u userKey) []byte {
	t.Helper()
	token, err := jwt.NewUserClaims(u.pub).Encode(a.kp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, u.seed)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
