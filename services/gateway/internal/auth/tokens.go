package auth

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/skao/skao-staging/libs/contract"
)

// Tokens are static bearer tokens. Only their SHA-256 is kept in memory,
// and a presented token is compared with every entry in constant time.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash     [sha256.Size]byte
	username string
	roles    []string
}

// LoadTokens reads a tokens file: one token a line, as
//
//	<token> <username> [role,role,...]
//
// where <token> is the token itself or "sha256:" and the hex SHA-256 of it
// (so the file need not hold the secret). Blank lines and lines starting
// with # are ignored. The file is read once, at start.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	ts, err := parseTokens(bufio.NewScanner(f))
	if err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", path, err)
	}
	return ts, nil
}

func parseTokens(sc *bufio.Scanner) (*Tokens, error) {
	ts := &Tokens{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || len(f) > 3 {
			// The line holds a secret: its number is enough.
			return nil, fmt.Errorf("line %d: want \"<token> <username> [role,role]\"", n)
		}
		var e tokenEntry
		if h, ok := strings.CutPrefix(f[0], "sha256:"); ok {
			b, err := hex.DecodeString(h)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("line %d: sha256: must be followed by 64 hex digits", n)
			}
			copy(e.hash[:], b)
		} else {
			e.hash = sha256.Sum256([]byte(f[0]))
		}
		if err := contract.ValidateUsername(f[1]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		e.username = f[1]
		if len(f) == 3 {
			for r := range strings.SplitSeq(f[2], ",") {
				if r != "" {
					e.roles = append(e.roles, r)
				}
			}
		}
		ts.entries = append(ts.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ts.entries) == 0 {
		return nil, fmt.Errorf("no tokens")
	}
	return ts, nil
}

// verify looks token up. Every entry is compared, so the time taken does
// not say which one matched or how much of a hash did.
func (ts *Tokens) verify(_ context.Context, token string) (Identity, error) {
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range ts.entries {
		if subtle.ConstantTimeCompare(h[:], ts.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Identity{}, fmt.Errorf("%w: unknown token", ErrInvalidToken)
	}
	e := ts.entries[found]
	return Identity{Username: e.username, Roles: e.roles}, nil
}
