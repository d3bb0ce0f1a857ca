// Command jupyter-bridge runs the jupyter-bridge service alone, against an
// external NATS server: it uploads jupyter_copy requests into users'
// JupyterHub servers. The hub is named by JUPYTERHUB_URL and
// JUPYTERHUB_API_TOKEN, as JupyterHub names them for its services.
package main

import (
	"context"
	"io"

	"github.com/skao/skao-staging/libs/service"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
)

func main() { service.Main("jupyter-bridge", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	return service.RunStandalone(ctx, "jupyter-bridge", args, stdout, jupyterbridge.Run, jupyterbridge.ApplyHubEnv)
}
