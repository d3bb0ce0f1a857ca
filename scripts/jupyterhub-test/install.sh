#!/usr/bin/env bash
# install.sh: install the Debian packages the jupyter-bridge integration
# tests run a real JupyterHub from (hub 3.0, jupyter_server, the proxy).
# Idempotent: does nothing when they are already there.
set -euo pipefail

packages=(jupyterhub python3-jupyter-server jupyter-notebook)
missing=()
for p in "${packages[@]}"; do
	if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
		missing+=("$p")
	fi
done
if ((${#missing[@]} == 0)); then
	echo "jupyterhub test packages already installed"
	exit 0
fi
sudo=()
((EUID == 0)) || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}"
