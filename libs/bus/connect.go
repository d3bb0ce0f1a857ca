package bus

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// MinServerVersion is the oldest nats-server the services work with:
// consumers filter on several subjects, which arrived in 2.10, and staged
// items expire by message schedules (STAGING_EXPIRIES), which arrived in
// 2.12.
const MinServerVersion = "2.12.0"

// Connect connects to the NATS server at url as client name, reconnecting
// forever, and fails when the server is older than MinServerVersion.
func Connect(url, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats_disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats_reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", RedactURL(url), err)
	}
	if v := nc.ConnectedServerVersion(); !versionAtLeast(v, MinServerVersion) {
		nc.Close()
		return nil, fmt.Errorf("nats server at %s is version %s; skao-staging needs %s or newer (multi-subject consumer filters, message schedules)", RedactURL(url), v, MinServerVersion)
	}
	return nc, nil
}

// versionAtLeast compares dotted versions numerically ("2.9.10" < "2.10.0").
func versionAtLeast(have, want string) bool {
	h, w := versionParts(have), versionParts(want)
	for i := range w {
		if h[i] != w[i] {
			return h[i] > w[i]
		}
	}
	return true
}

func versionParts(v string) [3]int {
	var out [3]int
	v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "-")
	for i, p := range strings.SplitN(v, ".", 3) {
		out[i], _ = strconv.Atoi(p)
	}
	return out
}

// RedactURL hides the credentials of a URL ("nats://user:pw@host" becomes
// "nats://***@host"), for logs and errors.
func RedactURL(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return scheme + "://***@" + rest[at+1:]
	}
	return url
}
