// Package idempotency makes a repeated submission with the same
// Idempotency-Key harmless. Request ids are derived from the caller and
// the key (so JetStream's Nats-Msg-Id duplicates window drops a repeated
// command), and the fingerprint of the first request under a key is kept
// in a JetStream key-value bucket, so a key reused for a different request
// is refused instead of silently answering with the first one's ids.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
)

// Bucket is the key-value bucket of the fingerprints.
const Bucket = "STAGING_IDEMPOTENCY"

// TTL is how long a key is remembered.
const TTL = 24 * time.Hour

// MaxKeyLen bounds an Idempotency-Key.
const MaxKeyLen = 255

// ErrKeyReused is returned when a key comes back with another request.
var ErrKeyReused = errors.New("idempotency key reused with a different request")

// namespace scopes the derived ids (a fixed, random UUID).
var namespace = uuid.MustParse("5b0c7f0e-2f3a-4d53-9a4e-6f1d2c8b7a90")

// Key is one caller's Idempotency-Key on one endpoint.
type Key struct {
	scope string
}

// NewKey scopes key to caller (the authenticated username, "" without
// authentication) and endpoint, so two callers or two endpoints never
// share ids. It returns false for a key that is empty, too long or not
// printable ASCII.
func NewKey(caller, endpoint, key string) (Key, bool) {
	if key == "" || len(key) > MaxKeyLen {
		return Key{}, false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return Key{}, false
		}
	}
	return Key{scope: caller + "\x00" + endpoint + "\x00" + key}, true
}

// ID is the n-th id derived from k: the same key always gives the same ids.
func (k Key) ID(n int) string {
	return uuid.NewSHA1(namespace, []byte(k.scope+"\x00"+strconv.Itoa(n))).String()
}

// JobID is the job id derived from k.
func (k Key) JobID() string {
	return uuid.NewSHA1(namespace, []byte(k.scope+"\x00job")).String()
}

// bucketKey is k as a key of the bucket (whose keys allow few characters).
func (k Key) bucketKey() string {
	h := sha256.Sum256([]byte(k.scope))
	return hex.EncodeToString(h[:])
}

// Fingerprint hashes a request's canonical encoding.
func Fingerprint(canonical []byte) string {
	h := sha256.Sum256(canonical)
	return hex.EncodeToString(h[:])
}

// Store keeps fingerprints in the bucket, which it creates on first use.
type Store struct {
	js jetstream.JetStream

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewStore returns a store over js.
func NewStore(js jetstream.JetStream) *Store {
	return &Store{js: js}
}

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	// The bucket is as replicated as the event stream the services set up
	// (STAGING_STREAM_REPLICAS), without a setting of its own.
	replicas := 1
	if st, err := s.js.Stream(ctx, contract.StreamEvents); err == nil {
		replicas = max(st.CachedInfo().Config.Replicas, 1)
	}
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Idempotency-Key fingerprints of the gateway: hash of caller and key -> hash of the request.",
		TTL:         TTL,
		History:     1,
		Replicas:    replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update bucket %s: %w", Bucket, err)
	}
	s.kv = kv
	return kv, nil
}

// Claim records fingerprint under k. It reports replay when k was already
// used with the same fingerprint, and returns ErrKeyReused when it was used
// with another one.
func (s *Store) Claim(ctx context.Context, k Key, fingerprint string) (replay bool, err error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return false, err
	}
	_, err = kv.Create(ctx, k.bucketKey(), []byte(fingerprint))
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("record idempotency key: %w", err)
	}
	e, err := kv.Get(ctx, k.bucketKey())
	if err != nil {
		return false, fmt.Errorf("read idempotency key: %w", err)
	}
	if string(e.Value()) != fingerprint {
		return false, ErrKeyReused
	}
	return true, nil
}
