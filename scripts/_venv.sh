# Sourced by the scripts: make sure ./.venv exists and holds this project (with test tools when asked).
# Reinstalls only when setup.cfg changed, so repeated runs are fast.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KEPTN_GITOPS_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
extras="${1:-}"
stamp="$venv/.installed-$(sha256sum "$root/setup.cfg" | cut -c1-16)${extras:+-$extras}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root${extras:+[$extras]}"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
