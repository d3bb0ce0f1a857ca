package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
)

// A standalone service joins the all-in-one's closed NATS server over the
// network with the key file the banner names (STAGING_NATS_NKEY_FILE), and
// serves; without it, it stops at start saying which setting it lacks.
func TestStandaloneServiceJoinsClosedNATS(t *testing.T) {
	sys := startClosedSystem(t)
	if sys.natsKey == "" {
		t.Fatal("the all-in-one with authentication on has no NATS key file")
	}
	var banner strings.Builder
	printBanner(&banner, sys.system)
	if !strings.Contains(banner.String(), "STAGING_NATS_NKEY_FILE") {
		t.Errorf("banner does not say how a standalone service gets in:\n%s", banner.String())
	}
	bin := filepath.Join(t.TempDir(), "stager")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/skao/skao-staging/services/stager/cmd/stager").CombinedOutput(); err != nil {
		t.Fatalf("go build the stager: %v\n%s", err, out)
	}
	dir := t.TempDir()
	stagerEnv := []string{
		"STAGING_NATS_URL=" + sys.natsURL,
		"STAGING_SOURCE_ROOT=" + sys.cfg.Stager.SourceRoot,
		"STAGING_USER_AREA_ROOT=" + filepath.Join(dir, "users"),
		"STAGING_DOWNLOAD_ADDR=127.0.0.1:0",
		"STAGING_LOG_LEVEL=warn",
	}
	if err := os.Mkdir(filepath.Join(dir, "users"), 0o755); err != nil {
		t.Fatal(err)
	}

	t.Run("refused without the key file", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(os.Environ(), append(stagerEnv, "STAGING_OPS_ADDR=127.0.0.1:0")...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("stager without the key file: %v, want exit status 1\n%s", err, out)
		}
		for _, want := range []string{"Authorization Violation", "STAGING_NATS_NKEY_FILE", "nats-admin.nk"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("stager's output does not say %q:\n%s", want, out)
			}
		}
	})

	t.Run("serves with the key file", func(t *testing.T) {
		ops := "127.0.0.1:" + fmt.Sprint(testenv.FreePort(t))
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), append(stagerEnv, "STAGING_OPS_ADDR="+ops, "STAGING_NATS_NKEY_FILE="+sys.natsKey)...)
		logs := testenv.StartProcess(t, cmd, "http://"+ops+"/readyz")
		// It came in over the network, not in-process.
		connz, err := sys.nats.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range connz.Conns {
			names = append(names, c.Name+"/"+c.Kind+"/"+c.IP)
		}
		if !strings.Contains(strings.Join(names, " "), "stager/Client/127.0.0.1") {
			t.Errorf("the embedded server's clients are %v, want the stager over TCP", names)
		}
		if strings.Contains(logs.String(), seedOf(t, sys.natsKey)) {
			t.Errorf("the stager's logs show the seed:\n%s", logs)
		}
	})
}

func seedOf(t *testing.T, file string) string {
	t.Helper()
	seed, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(seed))
}

// The all-in-one connects to a site's NATS server that grants it a user by
// nkey, with STAGING_NATS_NKEY_FILE; for its embedded server the setting
// is refused, that server needing none.
func TestAllInOneExternalNATSWithNkeyFile(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	url := natstest.StartProcess(t, fmt.Sprintf("authorization { users: [ { nkey: %s } ] }", pub))
	keyFile := filepath.Join(t.TempDir(), "staging.nk")
	if err := os.WriteFile(keyFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}

	sys := startSystem(t, url, "", "-nats-nkey-file", keyFile)
	if sys.nats != nil {
		t.Fatal("the all-in-one embedded a server though STAGING_NATS_URL is set")
	}
	// The system works: a direct_download through the gateway succeeds.
	sys.issueSampleLink(t)

	cfg, err := loadConfig([]string{"-data-dir", t.TempDir(), "-nats-nkey-file", keyFile}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := start(t.Context(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "STAGING_NATS_NKEY_FILE") {
		if s != nil {
			s.close(context.Background())
		}
		t.Errorf("start with an embedded server and STAGING_NATS_NKEY_FILE = %v, want an error naming the setting", err)
	}
}
