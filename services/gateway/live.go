package gateway

import (
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/gateway/internal/api"
	"github.com/skao/skao-staging/services/gateway/internal/live"
	"github.com/skao/skao-staging/services/gateway/internal/logwindow"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
	"github.com/skao/skao-staging/services/gateway/internal/ui"
)

// liveParts builds what the gateway shows people as it happens: the SSE
// event streams, the system log window (subscribed to every service's log
// records until the returned subscription is ended) and the web UI.
func liveParts(cfg Config, deps service.Deps, client *stagings.Client) (*live.Handler, *logwindow.Window, *nats.Subscription, http.Handler, error) {
	events, err := live.New(live.Config{
		JS:         deps.JS,
		Client:     client,
		Log:        deps.Log.With("component", "live"),
		WriteError: api.WriteError,
		Visible:    api.EventVisibility,
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	window := logwindow.New(cfg.LogWindowLines)
	sub, err := logwindow.Subscribe(deps.NC, window)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("gateway: log window: %w", err)
	}
	return events, window, sub, ui.Handler(), nil
}
