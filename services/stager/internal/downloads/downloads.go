// Package downloads issues and serves direct-download links. A link is an
// unguessable token bound to one source (a path, or a Rucio DID whose files
// are listed again when it is used) and one user, kept in a
// JetStream key-value bucket whose TTL expires it, so any stager replica can
// serve a link another one issued.
package downloads

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
)

// Bucket is the key-value bucket holding the links.
const Bucket = "STAGING_DOWNLOADS"

// PathPrefix starts the URL path of every link; the token follows it.
const PathPrefix = "/api/v1/downloads/"

// Link is what a token stands for.
type Link struct {
	// Path is the source, relative to the storage; empty for a DID.
	Path string `json:"path"`
	// DID is the source when it is a Rucio dataset or container: its
	// files are listed again at each download, not stored here (the
	// bucket's values are bounded in size, a dataset's files are not).
	DID      string `json:"did,omitempty"`
	Username string `json:"username"`
	// RequestID is the direct_download request the link was issued for:
	// the link's download events are published under it.
	RequestID string `json:"request_id"`
	// TraceID is that request's trace, copied onto the download events.
	TraceID string `json:"trace_id,omitempty"`
	// SpanID is the span that issued the link: each download's span is
	// its child, so the downloads join the request's trace.
	SpanID  string    `json:"span_id,omitempty"`
	Expires time.Time `json:"expires"`
}

// ErrNotFound is returned for a token that is unknown or expired.
var ErrNotFound = errors.New("no such download link")

// Store issues and looks up links.
type Store struct {
	kv  jetstream.KeyValue
	ttl time.Duration
}

// OpenStore creates or updates the bucket, whose entries live ttl.
func OpenStore(ctx context.Context, js jetstream.JetStream, ttl time.Duration) (*Store, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("download link lifetime must be positive, not %s", ttl)
	}
	// As replicated as the event stream the services set up
	// (STAGING_STREAM_REPLICAS): a link must not die with one node.
	replicas := 1
	if st, err := js.Stream(ctx, contract.StreamEvents); err == nil {
		replicas = max(st.CachedInfo().Config.Replicas, 1)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Direct-download links issued by the stager: token -> source path and user.",
		TTL:         ttl,
		History:     1,
		Replicas:    replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update bucket %s: %w", Bucket, err)
	}
	return &Store{kv: kv, ttl: ttl}, nil
}

// Issue stores a new link to l's source (Path or DID) for l.Username and
// l.RequestID, and returns its URL path and when it ends. The link
// remembers the span of ctx for its downloads.
func (s *Store) Issue(ctx context.Context, l Link) (string, time.Time, error) {
	// 32 random bytes: 256 bits, beyond guessing.
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", time.Time{}, fmt.Errorf("download token: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	l.Expires = time.Now().UTC().Add(s.ttl)
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		l.TraceID = sc.TraceID().String()
		if sc.HasSpanID() {
			l.SpanID = sc.SpanID().String()
		}
	}
	data, err := json.Marshal(l)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode download link: %w", err)
	}
	if _, err := s.kv.Create(ctx, token, data); err != nil {
		return "", time.Time{}, fmt.Errorf("store download link: %w", err)
	}
	return PathPrefix + token, l.Expires, nil
}

// Lookup returns the link of token, or ErrNotFound.
func (s *Store) Lookup(ctx context.Context, token string) (Link, error) {
	if len(token) != 43 {
		return Link{}, ErrNotFound
	}
	e, err := s.kv.Get(ctx, token)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrInvalidKey) {
		return Link{}, ErrNotFound
	}
	if err != nil {
		return Link{}, fmt.Errorf("look up download link: %w", err)
	}
	var l Link
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		return Link{}, fmt.Errorf("decode download link: %w", err)
	}
	// The bucket's TTL removes entries lazily; the link's own expiry is
	// the one that counts.
	if !time.Now().Before(l.Expires) {
		return Link{}, ErrNotFound
	}
	return l, nil
}
