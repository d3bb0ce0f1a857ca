package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// layout is where the all-in-one keeps everything on disk, all below one
// data directory so that two copies can run side by side.
type layout struct {
	Dir      string // the data directory itself
	NATS     string // the embedded server's JetStream store
	Storage  string // the source storage root (a stand-in for /mnt/storage_a)
	UserArea string // the user-area root
	AuditDB  string // the SQLite audit database, unless configured
	NATSKey  string // the nkey seed that opens the embedded NATS server when authentication is on
}

func newLayout(dir string) (layout, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return layout{}, fmt.Errorf("data directory %s: %w", dir, err)
	}
	return layout{
		Dir:      abs,
		NATS:     filepath.Join(abs, "nats"),
		Storage:  filepath.Join(abs, "storage"),
		UserArea: filepath.Join(abs, "user_area"),
		AuditDB:  filepath.Join(abs, "audit.db"),
		NATSKey:  filepath.Join(abs, "nats-admin.nk"),
	}, nil
}

// sampleFile is created on first start so the README's curl lines have
// something to stage.
const (
	sampleFile    = "sample/hello.txt"
	sampleContent = "Hello from skao-staging: this file was staged from the storage into your user area.\n"
)

// prepare creates the directories and, when absent, the sample data. When
// private, the data directory is made the service account's alone (0700):
// it holds what other local users must not read, the NATS credentials, the
// JetStream store (download tokens, every request's events) and the SQLite
// audit. notice says so when it was open to others before.
func (l layout) prepare(private bool) (notice string, err error) {
	if private {
		if notice, err = makePrivate(l.Dir); err != nil {
			return "", err
		}
	}
	for _, d := range []string{l.NATS, l.Storage, l.UserArea, filepath.Join(l.Storage, "sample", "tree", "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", fmt.Errorf("create %s: %w", d, err)
		}
	}
	samples := map[string]string{
		sampleFile:              sampleContent,
		"sample/tree/a.txt":     "first file of the sample tree\n",
		"sample/tree/sub/b.txt": "second file of the sample tree\n",
	}
	for name, content := range samples {
		p := filepath.Join(l.Storage, filepath.FromSlash(name))
		if _, err := os.Stat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("sample %s: %w", p, err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write sample %s: %w", p, err)
		}
	}
	return notice, nil
}

// makePrivate creates dir with mode 0700, or takes the group's and others'
// permissions away from an existing one.
func makePrivate(dir string) (notice string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return "", nil
	}
	if err := os.Chmod(dir, perm&0o700); err != nil {
		return "", fmt.Errorf("data directory %s is open to others (mode %04o) and could not be made private: %w", dir, perm, err)
	}
	return fmt.Sprintf("the data directory %s was open to others (mode %04o); it is now %04o, as authentication is on", dir, perm, perm&0o700), nil
}
