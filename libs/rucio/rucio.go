// Package rucio resolves a Rucio data identifier (DID, "scope:name") into
// the files it stands for on the site's own RSE, as paths relative to the
// storage mounted as the source root. The stager and the bridge use it to
// stage a DID as they stage a path.
//
// What Rucio answers is input, not trust: the paths it yields still go
// through the storage's os.Root checks, and the sizes and checksums it
// gives are compared with the copies. Secrets (the password, the tokens)
// never reach an error, a log line or an event.
package rucio

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/contract"
)

// Config is the site's Rucio, as the stager and the bridge read it
// (STAGING_RUCIO_*). Without a URL, a request naming a DID is refused.
type Config struct {
	URL       string `env:"RUCIO_URL" help:"the site's Rucio REST server, e.g. https://rucio.example.org; empty: requests by DID are refused"`
	Account   string `env:"RUCIO_ACCOUNT" help:"the Rucio account the service acts as"`
	Username  string `env:"RUCIO_USERNAME" help:"userpass identity of the account (with RUCIO_PASSWORD); or set RUCIO_TOKEN_FILE"`
	Password  string `env:"RUCIO_PASSWORD" secret:"true" help:"password of RUCIO_USERNAME"`
	TokenFile string `env:"RUCIO_TOKEN_FILE" help:"file holding a bearer token (an OIDC token), read again whenever it changes; instead of userpass"`
	RSE       string `env:"RUCIO_RSE" help:"the site's RSE, whose storage is mounted as STAGING_SOURCE_ROOT"`
	// PFNPrefix maps a replica's PFN onto the source root: a PFN under it
	// names the file at the rest of the PFN below the root.
	PFNPrefix string        `env:"RUCIO_PFN_PREFIX" help:"the RSE protocol's PFN prefix that is the source root, e.g. file://localhost/srv/rse/"`
	Timeout   time.Duration `env:"RUCIO_TIMEOUT" envDefault:"30s" help:"longest one call to Rucio may take"`
	Retries   int           `env:"RUCIO_RETRIES" envDefault:"4" help:"attempts of a call to an unreachable or failing (5xx) Rucio before rucio_unavailable"`
}

// Enabled reports whether a Rucio is configured.
func (c Config) Enabled() bool { return c.URL != "" }

// Kind is the type of a DID.
type Kind string

// The DID types.
const (
	KindFile      Kind = "FILE"
	KindDataset   Kind = "DATASET"
	KindContainer Kind = "CONTAINER"
)

// File is one file of a DID, as the catalogue describes it.
type File struct {
	// Name is the file's DID name; a dataset stages it at this name
	// (a '/' in it making subdirectories).
	Name string
	// Path is the replica on the site's RSE, relative to the source root.
	Path    string
	Bytes   int64
	Adler32 string
}

// Client speaks to one Rucio server. It is safe for concurrent use.
type Client struct {
	cfg   Config
	http  *http.Client
	retry backoff.Exponential

	mu      sync.Mutex
	token   string
	expires time.Time
	// The token file as last read, to read it again when it changes.
	fileMod  time.Time
	fileSize int64
}

// New checks cfg and returns a client. hc may be nil (http.DefaultClient's
// transport, with cfg.Timeout per call).
func New(cfg Config, hc *http.Client) (*Client, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("rucio: STAGING_RUCIO_URL is not set")
	case cfg.RSE == "":
		return nil, errors.New("rucio: STAGING_RUCIO_RSE is not set")
	case cfg.PFNPrefix == "":
		return nil, errors.New("rucio: STAGING_RUCIO_PFN_PREFIX is not set")
	case cfg.Account == "":
		return nil, errors.New("rucio: STAGING_RUCIO_ACCOUNT is not set")
	case (cfg.TokenFile == "") == (cfg.Username == ""):
		return nil, errors.New("rucio: set either STAGING_RUCIO_USERNAME and STAGING_RUCIO_PASSWORD, or STAGING_RUCIO_TOKEN_FILE")
	}
	if _, err := url.Parse(cfg.URL); err != nil {
		return nil, fmt.Errorf("rucio: STAGING_RUCIO_URL: %w", err)
	}
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout}
	}
	return &Client{cfg: cfg, http: hc, retry: backoff.Exponential{Base: 200 * time.Millisecond, Max: 5 * time.Second}}, nil
}

// SetRetryDelay sets the first delay between two attempts (tests make it
// short).
func (c *Client) SetRetryDelay(d time.Duration) { c.retry = backoff.Exponential{Base: d, Max: 8 * d} }

// Kind looks the DID up: did_not_found when the catalogue does not hold it.
func (c *Client) Kind(ctx context.Context, did string) (Kind, error) {
	scope, name, err := contract.ValidateDID(did)
	if err != nil {
		return "", err
	}
	var kind Kind
	err = c.call(ctx, "/dids/"+url.PathEscape(scope)+"/"+url.PathEscape(name), func(body io.Reader) error {
		var d struct {
			Type Kind `json:"type"`
		}
		if err := json.NewDecoder(body).Decode(&d); err != nil {
			return fmt.Errorf("decode the DID %s: %w", did, err)
		}
		kind = d.Type
		return nil
	})
	if err != nil {
		return "", err
	}
	switch kind {
	case KindFile, KindDataset, KindContainer:
		return kind, nil
	}
	return "", contract.Errorf(contract.CodeRucioUnavailable, "rucio answered an unknown type %q for %s", kind, did)
}

// Files calls fn with each file of did (a file, or every file of a dataset
// or a container, however deep), in the catalogue's order, as Rucio
// streams them: memory does not grow with the number of files. A file
// with no AVAILABLE replica on the site's RSE fails with not_at_site
// (naming the RSEs that hold it) or replica_unavailable; a DID that turns
// out to hold nothing, with did_not_found.
func (c *Client) Files(ctx context.Context, did string, fn func(File) error) error {
	scope, name, err := contract.ValidateDID(did)
	if err != nil {
		return err
	}
	// sort=random: the default geoip sort costs the server a lookup per
	// call, for an order a site with one RSE has no use for.
	p := "/replicas/" + url.PathEscape(scope) + "/" + url.PathEscape(name) + "?sort=random"
	n := 0
	err = c.call(ctx, p, func(body io.Reader) error {
		// NDJSON: one replica per line, not a JSON array.
		dec := json.NewDecoder(bufio.NewReader(body))
		for {
			var r replica
			if err := dec.Decode(&r); err == io.EOF {
				return nil
			} else if err != nil {
				return contract.Errorf(contract.CodeRucioUnavailable, "rucio's replica list for %s broke off: %v", did, err)
			}
			f, err := c.onSite(r)
			if err != nil {
				return err
			}
			n++
			if err := fn(f); err != nil {
				return err
			}
		}
	})
	if err != nil {
		return err
	}
	if n == 0 {
		// Rucio answers an unknown DID with 200 and an empty stream.
		return contract.Errorf(contract.CodeDIDNotFound, "rucio knows no file of %s", did)
	}
	return nil
}

// replica is one line of GET /replicas/{scope}/{name}.
type replica struct {
	Scope   string              `json:"scope"`
	Name    string              `json:"name"`
	Bytes   int64               `json:"bytes"`
	Adler32 string              `json:"adler32"`
	RSEs    map[string][]string `json:"rses"`
	States  map[string]string   `json:"states"`
}

// onSite turns a replica line into the file on the site's RSE.
func (c *Client) onSite(r replica) (File, error) {
	did := r.Scope + ":" + r.Name
	pfns, held := r.RSEs[c.cfg.RSE]
	state := r.States[c.cfg.RSE]
	if !held && state == "" {
		var elsewhere []string
		for rse := range r.RSEs {
			elsewhere = append(elsewhere, rse)
		}
		slices.Sort(elsewhere)
		where := "no RSE"
		if len(elsewhere) > 0 {
			where = strings.Join(elsewhere, ", ")
		}
		return File{}, contract.Errorf(contract.CodeNotAtSite, "%s has no replica on %s; it is held by %s", did, c.cfg.RSE, where)
	}
	if state != "AVAILABLE" {
		return File{}, contract.Errorf(contract.CodeReplicaUnavailable, "the replica of %s on %s is %s, not AVAILABLE", did, c.cfg.RSE, state)
	}
	for _, pfn := range pfns {
		rel, ok := strings.CutPrefix(pfn, c.cfg.PFNPrefix)
		if !ok {
			continue
		}
		// Cleaned, never trusted: the storage's os.Root still refuses a
		// path that leads out of it.
		return File{Name: r.Name, Path: path.Clean(rel), Bytes: r.Bytes, Adler32: r.Adler32}, nil
	}
	return File{}, contract.Errorf(contract.CodeReplicaUnavailable, "the replica of %s on %s has no PFN under %s", did, c.cfg.RSE, c.cfg.PFNPrefix)
}

// call GETs p and hands a 200's body to read. A 401 renews the token
// once; an unreachable server or a 5xx is tried again with back-off, then
// fails with rucio_unavailable. A failure inside read is not retried: part
// of the answer has been used already.
func (c *Client) call(ctx context.Context, p string, read func(io.Reader) error) error {
	renewed := false
	for attempt := 1; ; attempt++ {
		token, err := c.authToken(ctx)
		if err == nil {
			var resp *http.Response
			resp, err = c.get(ctx, p, token)
			if err == nil {
				switch {
				case resp.StatusCode == http.StatusOK:
					err = read(resp.Body)
					resp.Body.Close()
					return err
				case resp.StatusCode == http.StatusUnauthorized && !renewed:
					resp.Body.Close()
					renewed = true
					c.forget(token)
					attempt--
					continue
				case resp.StatusCode >= 500:
					err = fmt.Errorf("rucio answered %s", resp.Status)
					resp.Body.Close()
				default:
					defer resp.Body.Close()
					return c.refusal(p, resp)
				}
			}
		}
		if _, ok := errors.AsType[*contract.Error](err); ok {
			return err
		}
		if ctx.Err() != nil || attempt >= max(c.cfg.Retries, 1) {
			return contract.Errorf(contract.CodeRucioUnavailable, "rucio at %s did not answer after %d attempts: %v", c.cfg.URL, attempt, err)
		}
		if werr := backoff.Wait(ctx, c.retry.Delay(attempt)); werr != nil {
			return contract.Errorf(contract.CodeRucioUnavailable, "rucio at %s: %v", c.cfg.URL, err)
		}
	}
}

func (c *Client) get(ctx context.Context, p, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.cfg.URL, "/")+p, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Rucio-Auth-Token", token)
	req.Header.Set("X-Rucio-Account", c.cfg.Account)
	resp, err := c.http.Do(req)
	if err != nil {
		// The URL of the error names no secret: the token is a header.
		return nil, err
	}
	return resp, nil
}

// refusal maps Rucio's answer to a 4xx other than a first 401.
func (c *Client) refusal(p string, resp *http.Response) error {
	var e struct {
		Class   string `json:"ExceptionClass"`
		Message string `json:"ExceptionMessage"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	if resp.StatusCode == http.StatusNotFound && e.Class == "DataIdentifierNotFound" {
		return contract.Errorf(contract.CodeDIDNotFound, "rucio: %s", e.Message)
	}
	what, _, _ := strings.Cut(p, "?")
	return contract.Errorf(contract.CodeRucioUnavailable, "rucio refused %s: %s %s", what, resp.Status, e.Class)
}

// authToken returns the token to send: the token file's, read again when
// it changed; or the userpass token, cached until shortly before it
// expires.
func (c *Client) authToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.TokenFile != "" {
		return c.readTokenFile()
	}
	if c.token != "" && time.Until(c.expires) > time.Minute {
		return c.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.cfg.URL, "/")+"/auth/userpass", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Rucio-Account", c.cfg.Account)
	req.Header.Set("X-Rucio-Username", c.cfg.Username)
	req.Header.Set("X-Rucio-Password", c.cfg.Password)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		return "", fmt.Errorf("rucio login answered %s", resp.Status)
	case resp.StatusCode != http.StatusOK:
		// The reason is in the headers; the password is in none of them.
		return "", contract.Errorf(contract.CodeRucioUnavailable, "rucio refused the login of %s as %s: %s %s",
			c.cfg.Username, c.cfg.Account, resp.Status, resp.Header.Get("ExceptionClass"))
	}
	token := resp.Header.Get("X-Rucio-Auth-Token")
	if token == "" {
		return "", contract.Errorf(contract.CodeRucioUnavailable, "rucio's login answer holds no token")
	}
	expires, err := time.Parse(time.RFC1123, resp.Header.Get("X-Rucio-Auth-Token-Expires"))
	if err != nil {
		// Unknown expiry: used until a 401 says otherwise.
		expires = time.Now().Add(time.Hour)
	}
	c.token, c.expires = token, expires
	return token, nil
}

// readTokenFile returns the token file's token, reading the file again
// when its modification time or size changed. The caller holds c.mu.
func (c *Client) readTokenFile() (string, error) {
	fi, err := os.Stat(c.cfg.TokenFile)
	if err != nil {
		return "", contract.Errorf(contract.CodeRucioUnavailable, "rucio token file: %v", err)
	}
	if c.token != "" && fi.ModTime().Equal(c.fileMod) && fi.Size() == c.fileSize {
		return c.token, nil
	}
	b, err := os.ReadFile(c.cfg.TokenFile)
	if err != nil {
		return "", contract.Errorf(contract.CodeRucioUnavailable, "rucio token file: %v", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", contract.Errorf(contract.CodeRucioUnavailable, "rucio token file %s is empty", c.cfg.TokenFile)
	}
	c.token, c.fileMod, c.fileSize = token, fi.ModTime(), fi.Size()
	return token, nil
}

// forget drops a token the server refused, so the next call logs in again
// (or reads the token file again).
func (c *Client) forget(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == token {
		c.token = ""
		c.fileMod = time.Time{}
	}
}
