package rucio_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/rucio/ruciotest"
)

func newClient(t *testing.T, s *ruciotest.Server, edit func(*rucio.Config)) *rucio.Client {
	t.Helper()
	cfg := rucio.Config{URL: s.URL, Account: ruciotest.Account, Username: ruciotest.Username, Password: ruciotest.Password,
		RSE: s.RSE, PFNPrefix: s.PFNPrefix(), Timeout: 5 * time.Second, Retries: 3}
	if edit != nil {
		edit(&cfg)
	}
	c, err := rucio.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetRetryDelay(time.Millisecond)
	return c
}

func files(t *testing.T, c *rucio.Client, did string) ([]rucio.File, error) {
	t.Helper()
	var out []rucio.File
	err := c.Files(context.Background(), did, func(f rucio.File) error {
		out = append(out, f)
		return nil
	})
	return out, err
}

func TestFilesOfNestedContainer(t *testing.T) {
	s := ruciotest.New(t, "SITE_POSIX", "/srv/rse/")
	s.AddFile("testsrc", "file1", []byte("one"))
	s.AddFile("testsrc", "dir/x", []byte("deeper"))
	s.AddFile("user.jdoe", "a.root", []byte("jdoe's"))
	s.AddCollection("DATASET", "testsrc", "ds1", "testsrc:file1", "testsrc:dir/x")
	s.AddCollection("DATASET", "user.jdoe", "ds2", "user.jdoe:a.root")
	s.AddCollection("CONTAINER", "testsrc", "inner", "user.jdoe:ds2")
	s.AddCollection("CONTAINER", "testsrc", "outer", "testsrc:ds1", "testsrc:inner")
	c := newClient(t, s, nil)

	kind, err := c.Kind(context.Background(), "testsrc:outer")
	if err != nil || kind != rucio.KindContainer {
		t.Fatalf("Kind = %q, %v; want CONTAINER", kind, err)
	}
	got, err := files(t, c, "testsrc:outer")
	if err != nil {
		t.Fatal(err)
	}
	want := []rucio.File{
		{Name: "file1", Path: "testsrc/22/da/file1", Bytes: 3, Adler32: "02910143"},
		{Name: "dir/x", Path: "testsrc/cf/df/dir/x", Bytes: 6, Adler32: "08770276"},
		{Name: "a.root", Path: "user/jdoe/f6/00/a.root", Bytes: 6, Adler32: "0822023d"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("files (-got +want):\n%s", diff)
	}
}

func TestErrors(t *testing.T) {
	s := ruciotest.New(t, "SITE_POSIX", "/srv/rse/")
	s.AddFile("testsrc", "elsewhere", []byte("x"), "CERN_DISK", "AUS_DISK")
	s.AddFile("testsrc", "copying", []byte("x"))
	s.SetState("testsrc", "copying", "SITE_POSIX", "COPYING")
	c := newClient(t, s, nil)
	for _, tt := range []struct {
		did    string
		want   contract.Code
		detail string
	}{
		{"testsrc:nosuch", contract.CodeDIDNotFound, "testsrc:nosuch"},
		{"testsrc:elsewhere", contract.CodeNotAtSite, "AUS_DISK, CERN_DISK"},
		{"testsrc:copying", contract.CodeReplicaUnavailable, "COPYING"},
		{"nosuch", contract.CodeInvalidDID, "scope:name"},
	} {
		_, err := files(t, c, tt.did)
		if got := contract.CodeOf(err); got != tt.want || !strings.Contains(err.Error(), tt.detail) {
			t.Errorf("Files(%s) = %v, want %s naming %q", tt.did, err, tt.want, tt.detail)
		}
	}
	if _, err := c.Kind(context.Background(), "testsrc:nosuch"); contract.CodeOf(err) != contract.CodeDIDNotFound {
		t.Errorf("Kind(nosuch) = %v, want did_not_found", err)
	}
}

// TestRetries: a failing Rucio is tried again with back-off, then given up
// as rucio_unavailable; one that recovers within the retries is used.
func TestRetries(t *testing.T) {
	s := ruciotest.New(t, "SITE_POSIX", "/srv/rse/")
	s.AddFile("testsrc", "file1", []byte("one"))
	c := newClient(t, s, nil)
	s.Fail(2)
	if _, err := files(t, c, "testsrc:file1"); err != nil {
		t.Errorf("after 2 failures of 3 attempts: %v", err)
	}
	s.Fail(100)
	_, err := files(t, c, "testsrc:file1")
	if contract.CodeOf(err) != contract.CodeRucioUnavailable {
		t.Errorf("got %v, want rucio_unavailable", err)
	}
	s.Fail(0)

	down := newClient(t, s, func(cfg *rucio.Config) { cfg.URL = "http://127.0.0.1:1" })
	if _, err := files(t, down, "testsrc:file1"); contract.CodeOf(err) != contract.CodeRucioUnavailable {
		t.Errorf("unreachable: got %v, want rucio_unavailable", err)
	}
}

// TestTokenExpiry: an expired token is answered 401, and the client logs
// in again once, unseen by its caller; a cached one is reused.
func TestTokenExpiry(t *testing.T) {
	s := ruciotest.New(t, "SITE_POSIX", "/srv/rse/")
	s.AddFile("testsrc", "file1", []byte("one"))
	c := newClient(t, s, nil)
	if _, err := files(t, c, "testsrc:file1"); err != nil {
		t.Fatal(err)
	}
	before := s.Calls()
	if _, err := files(t, c, "testsrc:file1"); err != nil {
		t.Fatal(err)
	}
	if n := s.Calls() - before; n != 1 {
		t.Errorf("%d calls with a cached token, want 1", n)
	}
	s.ExpireTokens()
	if _, err := files(t, c, "testsrc:file1"); err != nil {
		t.Errorf("after the token expired: %v", err)
	}

	bad := newClient(t, s, func(cfg *rucio.Config) { cfg.Password = "wrong-secret" })
	_, err := files(t, bad, "testsrc:file1")
	if contract.CodeOf(err) != contract.CodeRucioUnavailable || strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("wrong password: got %v, want rucio_unavailable without the password", err)
	}
}

// TestTokenFile: the token is read from the file, and read again when the
// file changes (a renewed OIDC token).
func TestTokenFile(t *testing.T) {
	s := ruciotest.New(t, "SITE_POSIX", "/srv/rse/")
	s.AddFile("testsrc", "file1", []byte("one"))
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(s.IssueToken()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s, func(cfg *rucio.Config) { cfg.Username, cfg.Password, cfg.TokenFile = "", "", file })
	if _, err := files(t, c, "testsrc:file1"); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	_, err := files(t, c, "testsrc:file1")
	if contract.CodeOf(err) != contract.CodeRucioUnavailable {
		t.Errorf("expired token in the file: got %v, want rucio_unavailable", err)
	}
	// A renewed token, written as a token renewer does (a new file
	// renamed into place).
	tmp := file + ".new"
	if err := os.WriteFile(tmp, []byte(s.IssueToken()+"  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	if _, err := files(t, c, "testsrc:file1"); err != nil {
		t.Errorf("after the token file was renewed: %v", err)
	}
}

func TestNewRefusesIncompleteConfig(t *testing.T) {
	full := rucio.Config{URL: "http://rucio", Account: "root", Username: "u", Password: "p", RSE: "R", PFNPrefix: "file://localhost/srv/"}
	for name, edit := range map[string]func(*rucio.Config){
		"no rse":              func(c *rucio.Config) { c.RSE = "" },
		"no prefix":           func(c *rucio.Config) { c.PFNPrefix = "" },
		"no account":          func(c *rucio.Config) { c.Account = "" },
		"no identity":         func(c *rucio.Config) { c.Username = "" },
		"userpass and a file": func(c *rucio.Config) { c.TokenFile = "/run/token" },
	} {
		cfg := full
		edit(&cfg)
		if _, err := rucio.New(cfg, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := rucio.New(full, nil); err != nil {
		t.Errorf("complete: %v", err)
	}
}
