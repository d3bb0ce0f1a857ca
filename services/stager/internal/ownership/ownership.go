// Package ownership maps usernames to the uid and gid that staged data is
// given. It never creates users: a username unknown to the mapping is an
// error.
package ownership

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/skao/skao-staging/libs/contract"
)

// The mapping modes.
const (
	ModeNone   = "none"   // staged data keeps the stager's own uid and gid
	ModePasswd = "passwd" // looked up through os/user: /etc/passwd or NSS
	ModeMap    = "map"    // read from a file of "username uid:gid" lines
)

// ID is a numeric owner.
type ID struct{ UID, GID int }

// Owners looks up owners. The zero value (and a nil *Owners) maps nothing.
type Owners struct {
	mode  string
	table map[string]ID
}

// New returns the mapping of mode; mapFile is read in ModeMap.
func New(mode, mapFile string) (*Owners, error) {
	switch mode {
	case "", ModeNone:
		return &Owners{mode: ModeNone}, nil
	case ModePasswd:
		return &Owners{mode: ModePasswd}, nil
	case ModeMap:
		table, err := readMap(mapFile)
		if err != nil {
			return nil, err
		}
		return &Owners{mode: ModeMap, table: table}, nil
	}
	return nil, fmt.Errorf("ownership mode %q: want none, passwd or map", mode)
}

// Lookup returns the owner of username's data; ok is false when no
// ownership is applied.
func (o *Owners) Lookup(username string) (id ID, ok bool, err error) {
	if o == nil {
		return ID{}, false, nil
	}
	switch o.mode {
	case ModePasswd:
		u, err := user.Lookup(username)
		if err != nil {
			if _, unknown := errors.AsType[user.UnknownUserError](err); unknown {
				return ID{}, false, contract.Errorf(contract.CodeInvalidUsername, "user %q does not exist at this site", username)
			}
			return ID{}, false, fmt.Errorf("look up user %s: %w", username, err)
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 != nil || err2 != nil {
			return ID{}, false, fmt.Errorf("user %s has a non-numeric uid %q or gid %q", username, u.Uid, u.Gid)
		}
		return ID{uid, gid}, true, nil
	case ModeMap:
		id, found := o.table[username]
		if !found {
			return ID{}, false, contract.Errorf(contract.CodeInvalidUsername, "user %q is not in this site's ownership map", username)
		}
		return id, true, nil
	}
	return ID{}, false, nil
}

func readMap(name string) (map[string]ID, error) {
	if name == "" {
		return nil, fmt.Errorf("ownership mode map needs a map file (STAGING_OWNERSHIP_MAP_FILE)")
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("ownership map: %w", err)
	}
	defer f.Close()
	table := map[string]ID{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("ownership map %s line %d: want \"username uid:gid\"", name, n)
		}
		u, g, found := strings.Cut(fields[1], ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if !found || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return nil, fmt.Errorf("ownership map %s line %d: %q is not uid:gid", name, n, fields[1])
		}
		if err := contract.ValidateUsername(fields[0]); err != nil {
			return nil, fmt.Errorf("ownership map %s line %d: %w", name, n, err)
		}
		table[fields[0]] = ID{uid, gid}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ownership map %s: %w", name, err)
	}
	return table, nil
}
