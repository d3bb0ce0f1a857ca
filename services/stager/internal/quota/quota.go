// Package quota bounds how much a user holds in the user area. Usage is
// what is on disk in the user's directory, measured when a copy asks for
// room (see docs/architecture.md, "Quota: what is on disk"): items that
// expired, were cancelled or that the user removed give their space back
// without any bookkeeping.
package quota

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/skao/skao-staging/libs/contract"
)

// Quotas are the site's quotas: a default and per-user overrides.
type Quotas struct {
	def   int64
	users map[string]int64
}

// Load reads the per-user overrides from file ("username bytes" lines; #
// starts a comment; no file: none) beside the default def. 0 is no quota.
func Load(def int64, file string) (*Quotas, error) {
	if def < 0 {
		return nil, fmt.Errorf("user quota (STAGING_USER_QUOTA) must not be negative, not %d", def)
	}
	q := &Quotas{def: def, users: map[string]int64{}}
	if file == "" {
		return q, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("user quota file (STAGING_USER_QUOTA_FILE): %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 || contract.ValidateUsername(fields[0]) != nil {
			return nil, fmt.Errorf("%s:%d: want \"username bytes\", got %q", file, n, strings.TrimSpace(line))
		}
		bytes, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil || bytes < 0 {
			return nil, fmt.Errorf("%s:%d: the quota of %s is not a number of bytes: %q", file, n, fields[0], fields[1])
		}
		q.users[fields[0]] = bytes
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("user quota file (STAGING_USER_QUOTA_FILE): %w", err)
	}
	return q, nil
}

// Of is the quota of username in bytes; 0 is none.
func (q *Quotas) Of(username string) int64 {
	if b, ok := q.users[username]; ok {
		return b
	}
	return q.def
}

// Check (on nil Quotas: no quota) refuses a copy of size bytes that would take username over their
// quota, with quota_exceeded naming the usage, the size and the quota.
// Usage is the bytes of the regular files under the user's directory in
// users; a file with other hard links (a local_hardlink, whose data is the
// source's) takes no room of its own and does not count.
func (q *Quotas) Check(users *os.Root, username string, size int64) error {
	if q == nil {
		return nil
	}
	limit := q.Of(username)
	if limit == 0 {
		return nil
	}
	used, err := Usage(users, username)
	if err != nil {
		return err
	}
	if used+size > limit {
		return contract.Errorf(contract.CodeQuotaExceeded, "%s uses %d bytes of the user area and this copy needs %d more, over the quota of %d bytes", username, used, size, limit)
	}
	return nil
}

// Usage is the bytes username holds in the user area (see Check).
func Usage(users *os.Root, username string) (int64, error) {
	var used int64
	err := fs.WalkDir(users.FS(), username, func(_ string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a user with no directory yet, or an entry removed meanwhile
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			return nil
		}
		used += fi.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("usage of %s in the user area: %w", username, err)
	}
	return used, nil
}
