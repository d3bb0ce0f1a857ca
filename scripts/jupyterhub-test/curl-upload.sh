#!/usr/bin/env bash
# curl-upload.sh FILE TARGET: upload FILE to TARGET in a user's Jupyter
# server with curl, as the baseline of the jupyter-bridge's upload
# benchmark: the same chunked Contents API PUTs the bridge makes (base64
# JSON bodies, "chunk" 1, 2, ..., -1; no chunk field for a one-piece file),
# one curl per chunk, each body built by dd | base64 and streamed through a
# pipe (the form in the JupyterHub reference notes).
#
# Environment: JUPYTERHUB_URL (the hub's public base URL), JUPYTERHUB_API_TOKEN
# (kept out of the command line: curl reads the header from a file),
# JUPYTER_USER (the server's owner), CHUNK_BYTES (raw bytes per chunk,
# default 16 MiB as the bridge's default).
set -euo pipefail

file="${1:?usage: curl-upload.sh FILE TARGET}"
target="${2:?usage: curl-upload.sh FILE TARGET}"
: "${JUPYTERHUB_URL:?}" "${JUPYTERHUB_API_TOKEN:?}" "${JUPYTER_USER:?}"
chunk="${CHUNK_BYTES:-16777216}"

hdr="$(mktemp)"
trap 'rm -f "$hdr"' EXIT
chmod 600 "$hdr"
printf 'Authorization: token %s\n' "$JUPYTERHUB_API_TOKEN" >"$hdr"

url="${JUPYTERHUB_URL%/}/user/$JUPYTER_USER/api/contents/$target"
size="$(stat -c %s "$file")"
n=$(((size + chunk - 1) / chunk))
((n > 0)) || n=1
for ((i = 0; i < n; i++)); do
	if ((n == 1)); then
		head='{"type":"file","format":"base64","content":"'
	else
		c=$((i + 1))
		((i == n - 1)) && c=-1
		head="{\"type\":\"file\",\"format\":\"base64\",\"chunk\":$c,\"content\":\""
	fi
	code="$({ printf '%s' "$head"
		dd if="$file" bs="$chunk" skip="$i" count=1 iflag=fullblock status=none | base64 -w0
		printf '"}'; } |
		curl -sS -o /dev/null -w '%{http_code}' -X PUT -H @"$hdr" \
			-H 'Content-Type: application/json' --data-binary @- "$url")"
	if [[ $code != 200 && $code != 201 ]]; then
		echo "error: chunk $((i + 1)) of $n: HTTP $code" >&2
		exit 1
	fi
done
