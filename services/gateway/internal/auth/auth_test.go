package auth

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestModes: mode none is an authenticator that is Off, not nil; a mode
// that authenticates is not Off.
func TestModes(t *testing.T) {
	off, err := New(Config{Mode: ModeNone}, nil)
	if err != nil || off == nil || !off.Off() {
		t.Fatalf("mode none = %v, %v; want an Off authenticator", off, err)
	}
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("secret ops admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	on, err := New(Config{Mode: ModeTokens, TokensFile: file, AdminRoles: []string{"admin"}}, nil)
	if err != nil || on.Off() {
		t.Fatalf("mode tokens = %v, %v; want one that is not Off", on, err)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer secret")
	if id, err := on.Authenticate(r); err != nil || !id.Privileged() {
		t.Errorf("Authenticate = %+v, %v; want ops, privileged through admin", id, err)
	}
}
