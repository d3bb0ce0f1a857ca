package hubclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/contract"
)

// User is the part of the hub's user model the bridge needs.
type User struct {
	Name string `json:"name"`
	// Servers holds the user's running or pending servers; the default
	// server has the key "". A stopped server is absent.
	Servers map[string]Server `json:"servers"`
}

// Server is one of a user's servers.
type Server struct {
	Name    string `json:"name"`
	Ready   bool   `json:"ready"`
	Pending string `json:"pending"` // "spawn", "stop" or ""
	URL     string `json:"url"`
}

// DefaultServer returns the user's default server and whether it exists.
func (u User) DefaultServer() (Server, bool) {
	s, ok := u.Servers[""]
	return s, ok
}

// Progress is one event of a spawn's progress stream.
type Progress struct {
	Progress int    `json:"progress"`
	Message  string `json:"message"`
	Ready    bool   `json:"ready"`
	Failed   bool   `json:"failed"`
}

// GetUser returns the hub's model of user name.
func (c *Client) GetUser(ctx context.Context, name string) (User, error) {
	resp, err := c.call(ctx, http.MethodGet, c.hubURL("/hub/api/users/%s", name), "get_user", nil)
	if err != nil {
		return User{}, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return User{}, contract.Errorf(CodeUserNotFound, "jupyterhub has no user %q", name)
	default:
		return User{}, statusError("get user "+name, resp)
	}
	var u User
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return User{}, contract.Errorf(CodeUnavailable, "get user %s: undecodable answer: %v", name, err)
	}
	return u, nil
}

// CreateUser adds user name to the hub; an existing user is not an error.
func (c *Client) CreateUser(ctx context.Context, name string) error {
	resp, err := c.call(ctx, http.MethodPost, c.hubURL("/hub/api/users/%s", name), "create_user", nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusConflict:
		return nil
	}
	return statusError("create user "+name, resp)
}

// StartResult says what a start request found.
type StartResult int

// The results of StartServer.
const (
	Started        StartResult = iota // the server came up within the hub's slow_spawn_timeout
	Pending                           // the server is still starting
	AlreadyRunning                    // the server was running or starting already
)

// StartServer asks the hub to start user name's default server.
func (c *Client) StartServer(ctx context.Context, name string) (StartResult, error) {
	resp, err := c.call(ctx, http.MethodPost, c.hubURL("/hub/api/users/%s/server", name), "start_server", nil)
	if err != nil {
		return 0, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return Started, nil
	case http.StatusAccepted:
		return Pending, nil
	case http.StatusBadRequest:
		// "<name> is already running"; anything else is a spawn refusal.
		msg := hubMessage(resp)
		if strings.Contains(msg, "already running") || strings.Contains(msg, "pending") {
			return AlreadyRunning, nil
		}
		return 0, contract.Errorf(CodeSpawnFailed, "start server of %s: %s", name, msg)
	case http.StatusNotFound:
		return 0, contract.Errorf(CodeUserNotFound, "jupyterhub has no user %q", name)
	case http.StatusInternalServerError:
		// A spawn that fails within the hub's slow_spawn_timeout comes
		// back as a 500 ("Spawner failed to start [status=1]. ..."): a
		// verdict on this server, not a hub that is down.
		msg := hubMessage(resp)
		if strings.Contains(msg, "failed to start") || strings.Contains(msg, "Spawn failed") {
			return 0, contract.Errorf(CodeSpawnFailed, "start server of %s: %s", name, msg)
		}
		return 0, contract.Errorf(CodeUnavailable, "start server of %s: %d %s", name, resp.StatusCode, msg)
	}
	return 0, statusError("start server of "+name, resp)
}

// StopServer asks the hub to stop user name's default server and returns
// once the hub has accepted; a stop may still be pending then.
func (c *Client) StopServer(ctx context.Context, name string) error {
	resp, err := c.call(ctx, http.MethodDelete, c.hubURL("/hub/api/users/%s/server", name), "stop_server", nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusAccepted:
		return nil
	case http.StatusNotFound:
		return contract.Errorf(CodeUserNotFound, "jupyterhub has no user %q", name)
	}
	return statusError("stop server of "+name, resp)
}

// errProgressGone means the hub has no spawn in progress to report on.
var errProgressGone = errors.New("no spawn in progress")

// FollowProgress reads the spawn progress stream of user name's server,
// passing each event to report (which may be nil), until the server is
// ready (nil) or failed (a spawn_failed error), or ctx ends.
func (c *Client) FollowProgress(ctx context.Context, name string, report func(Progress)) error {
	req, err := c.newRequest(ctx, http.MethodGet, c.hubURL("/hub/api/users/%s/server/progress", name), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.do(req, "progress")
	if err != nil {
		return err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusBadRequest:
		// No server or no spawn: the caller looks at the user again.
		return fmt.Errorf("progress of %s: %w", name, errProgressGone)
	default:
		return statusError("progress of "+name, resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			// Only data lines matter; the hub sends no event or id lines.
			if v, ok := strings.CutPrefix(line, "data:"); ok {
				if data.Len() > 0 {
					data.WriteByte('\n')
				}
				data.WriteString(strings.TrimPrefix(v, " "))
			}
			continue
		}
		if data.Len() == 0 {
			continue // the stream opens with blank events
		}
		var p Progress
		err := json.Unmarshal([]byte(data.String()), &p)
		data.Reset()
		if err != nil {
			continue
		}
		if report != nil {
			report(p)
		}
		switch {
		case p.Failed:
			return contract.Errorf(CodeSpawnFailed, "server of %s failed to start: %s", name, p.Message)
		case p.Ready:
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("progress of %s: %w", name, err)
	}
	// The stream closed before ready or failed; the caller looks again.
	return fmt.Errorf("progress of %s: stream ended: %w", name, errProgressGone)
}

// EnsureRunning makes sure user name's default server is ready, starting it
// and following its progress when it is not, for at most timeout. It
// reports whether it had to start the server.
func (c *Client) EnsureRunning(ctx context.Context, name string, timeout time.Duration, report func(Progress)) (started bool, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errSpawnTimeout)
	defer cancel()
	err = c.ensureRunning(ctx, name, report, &started)
	if err != nil && errors.Is(context.Cause(ctx), errSpawnTimeout) {
		return started, fmt.Errorf("%w: %w", contract.Errorf(CodeTimeout, "server of %s not ready within %s", name, timeout), err)
	}
	return started, err
}

var errSpawnTimeout = errors.New("spawn timeout")

func (c *Client) ensureRunning(ctx context.Context, name string, report func(Progress), started *bool) error {
	// The pauses between looks at the user: short at first (a server
	// starts in seconds), never over 2 s.
	pauses, delays := 0, backoff.Exponential{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	pause := func() error {
		pauses++
		return backoff.Wait(ctx, delays.Delay(pauses))
	}
	for {
		u, err := c.GetUser(ctx, name)
		if err != nil {
			return err
		}
		s, exists := u.DefaultServer()
		switch {
		case exists && s.Ready && s.Pending == "":
			return nil
		case exists && s.Pending == "stop":
			// A stop must finish before the server can start again.
			if err := pause(); err != nil {
				return fmt.Errorf("wait for the server of %s to stop: %w", name, err)
			}
			continue
		case !exists:
			res, err := c.StartServer(ctx, name)
			if err != nil {
				return err
			}
			*started = true
			if res == Started {
				if report != nil {
					report(Progress{Progress: 100, Ready: true, Message: "server started"})
				}
				return nil
			}
		}
		err = c.FollowProgress(ctx, name, report)
		if !errors.Is(err, errProgressGone) {
			return err
		}
		if err := pause(); err != nil {
			return fmt.Errorf("wait for the server of %s: %w", name, err)
		}
	}
}

// Ping checks that the hub answers its API root with the token accepted.
func (c *Client) Ping(ctx context.Context) error {
	resp, err := c.call(ctx, http.MethodGet, c.base+"/hub/api/user", "whoami", nil)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return statusError("ping hub", resp)
	}
	return nil
}
