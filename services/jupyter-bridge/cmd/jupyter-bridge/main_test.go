package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
)

// hubEnv sets the hub's variables, JupyterHub's and ours, for the test.
func hubEnv(t *testing.T, url, token string) {
	t.Setenv("STAGING_"+jupyterbridge.EnvHubURL, "")
	t.Setenv("STAGING_"+jupyterbridge.EnvHubToken, "")
	t.Setenv(jupyterbridge.EnvHubURL, url)
	t.Setenv(jupyterbridge.EnvHubToken, token)
}

// Without a hub the binary starts, says that jupyter_copy is off (it
// rejects every such command) and stops cleanly on cancel.
func TestRunStartsAndStops(t *testing.T) {
	hubEnv(t, "", "")
	url := natstest.Start(t)
	out := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-nats-url", url, "-ops-addr", "127.0.0.1:0"}, out) }()
	testenv.Eventually(t, 10*time.Second, "the bridge to start without a hub", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out)
		default:
		}
		return strings.Contains(out.String(), `"msg":"jupyter_copy_off"`)
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

// The hub comes from JupyterHub's own variables: with one set, the bridge
// goes on to open its source root, which is missing here.
func TestRunReadsJupyterHubVariables(t *testing.T) {
	hubEnv(t, "http://127.0.0.1:1", "s3cret-token")
	url := natstest.Start(t)
	out := &testenv.Buffer{}
	err := run(t.Context(), []string{"-nats-url", url, "-ops-addr", "127.0.0.1:0"}, out)
	if err == nil || !strings.Contains(err.Error(), "STAGING_SOURCE_ROOT") {
		t.Errorf("run = %v, want an error naming STAGING_SOURCE_ROOT", err)
	}
	logs := out.String()
	if !strings.Contains(logs, `"jupyterhub_url":"http://127.0.0.1:1"`) || !strings.Contains(logs, `"jupyterhub_api_token":"***"`) {
		t.Errorf("the logged configuration lacks the hub from JUPYTERHUB_URL and JUPYTERHUB_API_TOKEN:\n%s", logs)
	}
	if strings.Contains(logs, "s3cret-token") {
		t.Errorf("the token appears in the logs:\n%s", logs)
	}
}
