#!/usr/bin/env bash
# Installs Debian's PostgreSQL server when no server is under /usr/lib/postgresql.
#
# As root it uses apt-get directly (CI); as a normal user, sudo when it needs no password;
# otherwise it says what to run. The package's own "main" cluster is not created: molt's
# scripts start throwaway clusters of their own (scripts/pgcluster.py), and nothing should
# listen that the tests did not start.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null; then
    exit 0
fi
if [[ "$(id -u)" == 0 ]]; then
    as_root=()
elif sudo -n true 2> /dev/null; then
    as_root=(sudo -n)
else
    echo "PostgreSQL's server is not installed and installing it needs root:" >&2
    echo "    sudo apt-get install postgresql" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian's postgresql (once)" >&2
"${as_root[@]}" apt-get update -qq > /dev/null
"${as_root[@]}" apt-get install -y -qq --no-install-recommends postgresql-common > /dev/null
"${as_root[@]}" sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf
"${as_root[@]}" apt-get install -y -qq --no-install-recommends postgresql > /dev/null
