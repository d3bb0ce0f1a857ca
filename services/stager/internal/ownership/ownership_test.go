package ownership_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
)

func TestMapFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		user    string
		want    ownership.ID
		wantOK  bool
		wantErr bool // from New
		code    contract.Code
	}{
		{name: "listed", content: "alice 1000:100 # comment\n\nbob 1001:100\n", user: "bob", want: ownership.ID{UID: 1001, GID: 100}, wantOK: true},
		{name: "not listed", content: "alice 1000:100\n", user: "carol", code: contract.CodeInvalidUsername},
		{name: "no gid", content: "alice 1000\n", wantErr: true},
		{name: "extra field", content: "alice 1000:1 x\n", wantErr: true},
		{name: "negative", content: "alice -1:1\n", wantErr: true},
		{name: "bad username", content: "Alice 1:1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "map")
			if err := os.WriteFile(name, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			o, err := ownership.New(ownership.ModeMap, name)
			if tt.wantErr {
				if err == nil {
					t.Fatal("New accepted a bad map file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			id, ok, err := o.Lookup(tt.user)
			if tt.code != "" {
				if got := contract.CodeOf(err); got != tt.code {
					t.Fatalf("Lookup error %v, want code %s", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(id, tt.want); diff != "" || ok != tt.wantOK {
				t.Errorf("Lookup = %v, %v (-got +want):\n%s", id, ok, diff)
			}
		})
	}
}

func TestModes(t *testing.T) {
	none, err := ownership.New("none", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := none.Lookup("alice"); ok || err != nil {
		t.Errorf("mode none: Lookup = %v, %v; want nothing", ok, err)
	}
	passwd, err := ownership.New("passwd", "")
	if err != nil {
		t.Fatal(err)
	}
	id, ok, err := passwd.Lookup("root")
	if err != nil || !ok || id != (ownership.ID{}) {
		t.Errorf("mode passwd: Lookup(root) = %v, %v, %v; want 0:0", id, ok, err)
	}
	if _, _, err := passwd.Lookup("no_such_user_here"); contract.CodeOf(err) != contract.CodeInvalidUsername {
		t.Errorf("mode passwd: Lookup of an unknown user: %v, want invalid_username", err)
	}
	if _, err := ownership.New("ldap", ""); err == nil {
		t.Error("New accepted an unknown mode")
	}
	if _, err := ownership.New("map", ""); err == nil {
		t.Error("New accepted mode map without a file")
	}
}
