// Package ruciotest is a fake Rucio REST server for tests. It is not
// Rucio: it answers the few calls the staging service makes the way a real
// Rucio 41.0.0 server answered them when they were recorded
// (docs/rucio-fake.md), quirks included: NDJSON replica lists, a 200 with
// an empty body for an unknown DID, 400 for a missing token, the
// deterministic "hash" PFNs. TestRecording checks it against the
// recording in testdata, so a later recording can be checked in its place.
package ruciotest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/adler32"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The identity the fake accepts, the one of the recording.
const (
	Account  = "root"
	Username = "ddmlab"
	Password = "secret"
)

// Server is a fake Rucio on a loopback port.
type Server struct {
	*httptest.Server
	// Prefix is the RSE's protocol prefix: a replica's PFN is
	// "file://localhost" + Prefix + its deterministic path.
	Prefix string
	// RSE is the fake's own RSE (SITE_POSIX in the recording).
	RSE string

	mu       sync.Mutex
	lifetime time.Duration
	tokens   map[string]time.Time // token → expiry
	dids     map[string]*did      // "scope:name"
	failing  int                  // the next calls answered 503
	calls    atomic.Int64
}

type did struct {
	scope, name string
	kind        string // FILE, DATASET, CONTAINER
	bytes       int64
	adler32     string
	md5         string
	children    []string          // of a dataset or container, "scope:name"
	states      map[string]string // of a file: RSE → state
}

// New starts a fake whose RSE has the prefix prefix (ending in '/'). It
// stops when the test ends.
func New(t interface{ Cleanup(func()) }, rse, prefix string) *Server {
	s := &Server{Prefix: prefix, RSE: rse, lifetime: time.Hour, tokens: map[string]time.Time{}, dids: map[string]*did{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// PFNPrefix is the PFN prefix of the fake's RSE, the value of
// STAGING_RUCIO_PFN_PREFIX for a source root at Prefix.
func (s *Server) PFNPrefix() string { return "file://localhost" + s.Prefix }

// Path is the deterministic ("hash") path of a file DID below the RSE's
// prefix, as Rucio computes it: <scope>/<md5[0:2]>/<md5[2:4]>/<name>,
// a scope user.x or group.x with its dots turned into slashes.
func Path(scope, name string) string {
	h := md5.Sum([]byte(scope + ":" + name))
	hx := hex.EncodeToString(h[:])
	dir := scope
	if strings.HasPrefix(scope, "user") || strings.HasPrefix(scope, "group") {
		dir = strings.ReplaceAll(scope, ".", "/")
	}
	return dir + "/" + hx[0:2] + "/" + hx[2:4] + "/" + name
}

// AddFile registers a file DID with content's size and checksums and an
// AVAILABLE replica on each of rses (the fake's RSE when none is given).
// The content itself is the test's to write, at Path(scope, name) below
// the prefix: Rucio does not look.
func (s *Server) AddFile(scope, name string, content []byte, rses ...string) {
	if len(rses) == 0 {
		rses = []string{s.RSE}
	}
	m := md5.Sum(content)
	states := map[string]string{}
	for _, r := range rses {
		states[r] = "AVAILABLE"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dids[scope+":"+name] = &did{scope: scope, name: name, kind: "FILE", bytes: int64(len(content)),
		adler32: fmt.Sprintf("%08x", adler32.Checksum(content)), md5: hex.EncodeToString(m[:]), states: states}
}

// SetState sets the state of a file's replica on rse (e.g. COPYING,
// UNAVAILABLE).
func (s *Server) SetState(scope, name, rse, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dids[scope+":"+name].states[rse] = state
}

// SetCatalogue overrides what the catalogue says of a file, as a
// catalogue out of step with its storage would (md5 kept when empty).
func (s *Server) SetCatalogue(scope, name string, bytes int64, adler, md5 string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dids[scope+":"+name]
	d.bytes, d.adler32 = bytes, adler
	if md5 != "" {
		d.md5 = md5
	}
}

// AddCollection registers a dataset (kind DATASET) or container
// (CONTAINER) holding children, "scope:name" each.
func (s *Server) AddCollection(kind, scope, name string, children ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dids[scope+":"+name] = &did{scope: scope, name: name, kind: kind, children: children}
}

// SetTokenLifetime sets the lifetime of the tokens issued from now on.
func (s *Server) SetTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = d
}

// IssueToken returns a valid token, as an OIDC issuer would hand one to a
// token file.
func (s *Server) IssueToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issue()
}

// ExpireTokens makes every token issued so far invalid.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Fail makes the next n calls answer 503, as a server behind a proxy
// whose workers are down.
func (s *Server) Fail(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = n
}

// Calls is the number of calls answered so far.
func (s *Server) Calls() int64 { return s.calls.Load() }

func (s *Server) issue() string {
	var b [16]byte
	h := md5.Sum(fmt.Appendf(b[:0], "%d", time.Now().UnixNano()+int64(len(s.tokens))))
	token := Account + "-" + Username + "-unknown-" + hex.EncodeToString(h[:])
	s.tokens[token] = time.Now().Add(s.lifetime)
	return token
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	// As the recorded gunicorn: no keep-alive, and this header on all.
	w.Header().Set("Connection", "close")
	w.Header().Set("Access-Control-Allow-Origin", "None")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing > 0 {
		s.failing--
		http.Error(w, "<html><body><h1>503 Service Unavailable</h1></body></html>", http.StatusServiceUnavailable)
		return
	}
	p := r.URL.EscapedPath()
	switch {
	case p == "/ping":
		writeJSON(w, "application/json", map[string]string{"version": "41.0.0"})
		return
	case p == "/auth/userpass":
		s.login(w, r)
		return
	}
	token := r.Header.Get("X-Rucio-Auth-Token")
	if token == "" {
		rucioError(w, http.StatusBadRequest, "ValueError", "Token must be set.")
		return
	}
	if exp, ok := s.tokens[token]; !ok || time.Now().After(exp) {
		rucioError(w, http.StatusUnauthorized, "CannotAuthenticate", "Cannot authenticate with given credentials")
		return
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) < 3 || r.Method != http.MethodGet {
		rucioError(w, http.StatusNotFound, "MethodNotAllowed", "not in the fake")
		return
	}
	scope, err1 := url.PathUnescape(parts[1])
	name, err2 := url.PathUnescape(strings.Join(parts[2:], "/"))
	if err1 != nil || err2 != nil {
		rucioError(w, http.StatusBadRequest, "ValueError", "bad path")
		return
	}
	switch parts[0] {
	case "dids":
		if n, ok := strings.CutSuffix(name, "/files"); ok && s.dids[scope+":"+n] != nil {
			s.listFiles(w, scope+":"+n)
			return
		}
		s.getDID(w, scope, name)
	case "replicas":
		s.listReplicas(w, scope+":"+name)
	default:
		rucioError(w, http.StatusNotFound, "MethodNotAllowed", "not in the fake")
	}
}

// login answers GET /auth/userpass: the token in headers, an empty body.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Rucio-Account") != Account || r.Header.Get("X-Rucio-Username") != Username || r.Header.Get("X-Rucio-Password") != Password {
		msg := "Cannot authenticate to account " + r.Header.Get("X-Rucio-Account") + " with given credentials"
		w.Header().Set("ExceptionClass", "CannotAuthenticate")
		w.Header().Set("ExceptionMessage", msg)
		rucioError(w, http.StatusUnauthorized, "CannotAuthenticate", msg)
		return
	}
	token := s.issue()
	w.Header().Set("X-Rucio-Auth-Token", token)
	w.Header().Set("X-Rucio-Auth-Token-Expires", s.tokens[token].UTC().Format(time.RFC1123))
	w.WriteHeader(http.StatusOK)
}

func (s *Server) getDID(w http.ResponseWriter, scope, name string) {
	d := s.dids[scope+":"+name]
	if d == nil {
		rucioError(w, http.StatusNotFound, "DataIdentifierNotFound", fmt.Sprintf("Data identifier '%s:%s' not found", scope, name))
		return
	}
	if d.kind == "FILE" {
		writeJSON(w, "application/json", map[string]any{"scope": scope, "name": name, "type": d.kind, "account": Account,
			"bytes": d.bytes, "adler32": d.adler32, "md5": d.md5, "availability": "AVAILABLE", "expired_at": nil})
		return
	}
	writeJSON(w, "application/json", map[string]any{"scope": scope, "name": name, "type": d.kind, "account": Account,
		"open": true, "monotonic": false, "expired_at": nil, "length": nil, "bytes": nil})
}

// files calls fn with every file below key, depth first, in the order the
// children were attached.
func (s *Server) files(key string, fn func(*did)) {
	d := s.dids[key]
	if d == nil {
		return
	}
	if d.kind == "FILE" {
		fn(d)
		return
	}
	for _, c := range d.children {
		s.files(c, fn)
	}
}

// listReplicas answers GET /replicas/{scope}/{name}: NDJSON, one line per
// file, and an unknown DID a 200 with nothing in it.
func (s *Server) listReplicas(w http.ResponseWriter, key string) {
	w.Header().Set("Content-Type", "application/x-json-stream")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	s.files(key, func(f *did) {
		pfns := map[string]any{}
		rses := map[string][]string{}
		for rse := range f.states {
			pfn := "file://localhost" + s.Prefix + Path(f.scope, f.name)
			if rse != s.RSE {
				pfn = "root://" + strings.ToLower(rse) + ".example.org:1094//data/" + Path(f.scope, f.name)
			}
			pfns[pfn] = map[string]any{"rse_id": fmt.Sprintf("%x", md5.Sum([]byte(rse))), "rse": rse, "type": "DISK",
				"volatile": false, "domain": "wan", "priority": 1, "client_extract": false}
			rses[rse] = []string{pfn}
		}
		_ = enc.Encode(map[string]any{"scope": f.scope, "name": f.name, "bytes": f.bytes, "md5": f.md5, "adler32": f.adler32,
			"pfns": pfns, "rses": rses, "states": f.states})
	})
}

// listFiles answers GET /dids/{scope}/{name}/files: NDJSON.
func (s *Server) listFiles(w http.ResponseWriter, key string) {
	w.Header().Set("Content-Type", "application/x-json-stream")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	s.files(key, func(f *did) {
		_ = enc.Encode(map[string]any{"scope": f.scope, "name": f.name, "bytes": f.bytes, "adler32": f.adler32, "guid": nil, "events": nil})
	})
}

// rucioError answers as Rucio does: a JSON body, yet application/octet-stream.
func rucioError(w http.ResponseWriter, status int, class, msg string) {
	b, _ := json.Marshal(map[string]string{"ExceptionClass": class, "ExceptionMessage": msg})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, ctype string, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", ctype)
	_, _ = w.Write(b)
}
