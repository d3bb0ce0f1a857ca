# JupyterHub configuration for the jupyter-bridge integration tests: a hub
# on 127.0.0.1 with no system users (DummyAuthenticator), every user's
# single-user server a local process under the hub's uid with its notebook
# root in $JHUB_WORKDIR/users/<name>, and a service token whose role holds
# the scopes the bridge needs. Driven by environment variables that start.sh
# sets:
#
#   JHUB_WORKDIR             state, logs and user directories (required)
#   JHUB_PORT                public proxy port (hub API = +1, proxy API = +2)
#   JHUB_API_TOKEN           the service token (at least 8 characters)
#   JHUB_SERVICE_NAME        the service's name (default staging)
#   JHUB_TOKEN_MODE          scopes (default) or admin
#   JHUB_MAX_BODY_SIZE       single-user request body limit in bytes (512 MiB)
#   JHUB_SLOW_SPAWN_TIMEOUT  seconds before start answers 202 (hub default 10)
#   JHUB_HTTP_TIMEOUT        seconds a spawning server has to answer (30)
#   JHUB_START_TIMEOUT       seconds a spawner has to start (60)
#   JHUB_ALLOW_HIDDEN        1 lets the Contents API write dot-files
#   JHUB_LOG_LEVEL           hub log level (INFO)
import os

c = get_config()  # noqa: F821 (defined by JupyterHub when it loads this file)

workdir = os.environ["JHUB_WORKDIR"]
port = int(os.environ.get("JHUB_PORT", "18081"))
token = os.environ["JHUB_API_TOKEN"]
service = os.environ.get("JHUB_SERVICE_NAME", "staging")
max_body = int(os.environ.get("JHUB_MAX_BODY_SIZE", str(512 * 1024 * 1024)))

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = port
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = port + 1
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{port + 2}"
c.ConfigurableHTTPProxy.pid_file = f"{workdir}/jupyterhub-proxy.pid"
c.JupyterHub.pid_file = f"{workdir}/jupyterhub.pid"
c.JupyterHub.db_url = f"sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = f"{workdir}/jupyterhub_cookie_secret"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.log_level = os.environ.get("JHUB_LOG_LEVEL", "INFO")

c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = f"{workdir}/users/{{username}}"
c.Spawner.notebook_dir = f"{workdir}/users/{{username}}"
c.Spawner.default_url = "/tree"
# /usr/bin explicitly: a python3 earlier on PATH may lack jupyter_server.
c.Spawner.cmd = ["/usr/bin/jupyterhub-singleuser"]
args = [
    f"--ServerApp.max_body_size={max_body}",
    f"--ServerApp.max_buffer_size={max_body}",
]
if os.geteuid() == 0:
    # jupyter_server refuses to run as root without it.
    args.append("--allow-root")
if os.environ.get("JHUB_ALLOW_HIDDEN") == "1":
    args.append("--ContentsManager.allow_hidden=True")
c.Spawner.args = args
# stop.sh finds this instance's leftover servers by this marker.
c.Spawner.environment = {"JHUB_OWNER": workdir}
c.Spawner.http_timeout = int(os.environ.get("JHUB_HTTP_TIMEOUT", "30"))
c.Spawner.start_timeout = int(os.environ.get("JHUB_START_TIMEOUT", "60"))
if "JHUB_SLOW_SPAWN_TIMEOUT" in os.environ:
    c.JupyterHub.tornado_settings = {
        "slow_spawn_timeout": int(os.environ["JHUB_SLOW_SPAWN_TIMEOUT"]),
        "slow_stop_timeout": int(os.environ["JHUB_SLOW_SPAWN_TIMEOUT"]),
    }

if os.environ.get("JHUB_TOKEN_MODE", "scopes") == "admin":
    c.JupyterHub.services = [{"name": service, "api_token": token, "admin": True}]
else:
    c.JupyterHub.services = [{"name": service, "api_token": token}]
    c.JupyterHub.load_roles = [
        {
            "name": f"{service}-role",
            "services": [service],
            "scopes": [
                "admin:users",
                "admin:servers",
                "access:servers",
                "read:users",
                "read:servers",
                # Minting users' own tokens: the tests of per-request
                # tokens (POST /hub/api/users/<name>/tokens).
                "tokens",
            ],
        }
    ]

# Debian's configurable-http-proxy needs Debian's node modules; a Node.js
# from elsewhere does not search /usr/share/nodejs. The proxy inherits this.
os.environ["NODE_PATH"] = "/usr/share/nodejs"
