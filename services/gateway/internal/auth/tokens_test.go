package auth

import (
	"bufio"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name, file string
		wantErr    string
	}{
		{"plain and hashed", "# c\n\ntok-1 alice\nsha256:" + strings.Repeat("ab", 32) + " rucio service,admin\n", ""},
		{"too few fields", "tok-1\n", "line 1"},
		{"too many fields", "tok-1 alice admin extra\n", "line 1"},
		{"bad hash", "sha256:xyz alice\n", "64 hex"},
		{"bad username", "tok-1 Alice\n", "line 1"},
		{"empty", "# nothing\n", "no tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseTokens(bufio.NewScanner(strings.NewReader(tt.file)))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one saying %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "tok-1") {
				t.Errorf("the error shows the token: %v", err)
			}
		})
	}
}

func TestTokensVerify(t *testing.T) {
	ts, err := parseTokens(bufio.NewScanner(strings.NewReader("tok-alice alice\ntok-ops ops admin,x\n")))
	if err != nil {
		t.Fatal(err)
	}
	id, err := ts.verify(context.Background(), "tok-ops")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(id, Identity{Username: "ops", Roles: []string{"admin", "x"}}, cmp.AllowUnexported(Identity{})); diff != "" {
		t.Errorf("identity (-got +want):\n%s", diff)
	}
	if _, err := ts.verify(context.Background(), "tok-alicE"); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("unknown token: %v", err)
	}
}

func TestMayActFor(t *testing.T) {
	tests := []struct {
		name string
		id   Identity
		user string
		want bool
	}{
		{"self", Identity{Username: "alice"}, "alice", true},
		{"other", Identity{Username: "alice"}, "bob", false},
		{"privileged", Identity{Username: "ops", privileged: true}, "bob", true},
		{"nameless", Identity{}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.id.MayActFor(tt.user); got != tt.want {
				t.Errorf("MayActFor(%q) = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

func TestClaims(t *testing.T) {
	claims := map[string]any{"realm_access": map[string]any{"roles": []any{"admin", 3, "user"}}, "scope": "a b", "name": "x"}
	if diff := cmp.Diff(stringList(claim(claims, "realm_access.roles")), []string{"admin", "user"}); diff != "" {
		t.Errorf("nested roles (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(stringList(claim(claims, "scope")), []string{"a", "b"}); diff != "" {
		t.Errorf("string roles (-got +want):\n%s", diff)
	}
	if got := claim(claims, "name.deeper"); got != nil {
		t.Errorf("claim through a string = %v", got)
	}
}
