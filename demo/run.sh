#!/usr/bin/env bash
# Warden's main job, on this machine: a proxy in front of a local PostgreSQL, with the audit
# trail on and two columns encrypted (SM4: ID cards deterministic, salaries order-preserving),
# driven by a few statements through psql, then left running for you to use.
#
#   bash demo/run.sh            # build, set up, show, then serve until Ctrl-C
#   bash demo/run.sh --no-wait  # the same, but stop after the show (used by CI as a smoke test)
#
# It uses the PostgreSQL on 127.0.0.1:5432 when one answers as user postgres; otherwise it
# starts a throwaway cluster under demo/run/pg (initdb + pg_ctl), as the tests do.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
run="$here/run"
wait_at_end=1
[ "${1:-}" = "--no-wait" ] && wait_at_end=0

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Building warden (release)"
(cd "$root" && cargo build --release -p warden-proxy --quiet)
warden="$root/target/release/warden"

mkdir -p "$run"
chmod 755 "$run"

# --- the database --------------------------------------------------------------------------
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_host=127.0.0.1
if psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
    pg_port=5432
    say "Using the PostgreSQL already running on 127.0.0.1:5432"
else
    pg_port=55432
    say "No PostgreSQL on 127.0.0.1:5432: starting a throwaway cluster on port $pg_port"
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    if [ ! -d "$run/pg" ]; then
        mkdir -p "$run/pg" && [ "$(id -u)" = 0 ] && chown postgres: "$run/pg"
        as_pg "$pg_bin/initdb" -D "$run/pg" -U postgres --auth=trust --no-sync >/dev/null
    fi
    if ! as_pg "$pg_bin/pg_ctl" -D "$run/pg" status >/dev/null 2>&1; then
        as_pg "$pg_bin/pg_ctl" -D "$run/pg" -w -l "$run/pg/server.log" \
            -o "-p $pg_port -k $run/pg -c listen_addresses=127.0.0.1" start >/dev/null
    fi
fi
psql_admin() { psql -h "$pg_host" -p "$pg_port" -U postgres -d "${PGDB:-postgres}" -v ON_ERROR_STOP=1 -Atq "$@"; }

say "Creating the demo role and database (the password lives only in PostgreSQL)"
demo_password="demo-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
psql_admin -c "DROP DATABASE IF EXISTS warden_demo" -c "DROP ROLE IF EXISTS warden_demo"
psql_admin -c "SET password_encryption = 'scram-sha-256'" \
           -c "CREATE ROLE warden_demo LOGIN PASSWORD '$demo_password'" \
           -c "CREATE DATABASE warden_demo OWNER warden_demo"
PGDB=warden_demo psql_admin -c "SET ROLE warden_demo" -c "
    CREATE TABLE citizens (id serial PRIMARY KEY, name text, id_card text, phone text, salary numeric(10,2));
    INSERT INTO citizens (name, id_card, phone, salary) VALUES
      ('张三', '11010519491231002X', '13800138000', 8200.00),
      ('李四', '440524188001010014', '13912345678', 12500.50)"

# Warden authenticates clients against the verifier PostgreSQL stores: no cleartext password.
verifier=$(psql_admin -c "SELECT rolpassword FROM pg_authid WHERE rolname = 'warden_demo'")
printf '"warden_demo" "%s"\n' "$verifier" > "$run/users.txt"
chmod 600 "$run/users.txt"

say "Generating a TLS certificate for warden's listener"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$run/warden.key" -out "$run/warden.crt" 2>/dev/null

say "Creating a keyring (master key in a 0600 file) and two SM4 column keys"
rm -f "$run/master.key" "$run/keyring.json"
"$warden" keys new-master-key --out "$run/master.key" >/dev/null
cat > "$run/keys.toml" <<TOML
[keys]
keyring = "keyring.json"
master_key = { provider = "file", path = "master.key" }
TOML
(cd "$run" && "$warden" keys init --config keys.toml >/dev/null \
  && "$warden" keys add citizens.id_card --algorithm sm4 --mode deterministic --config keys.toml >/dev/null \
  && "$warden" keys add citizens.salary --algorithm sm4 --mode ope --config keys.toml >/dev/null \
  && "$warden" keys list --config keys.toml)

cat > "$run/policy.toml" <<TOML
# Which columns hold ciphertext (see docs/CONFIG.md, "Column encryption").
[[encrypt]]
column = "public.citizens.id_card"
key = "citizens.id_card"
algorithm = "sm4"
mode = "deterministic"       # equality, joins, UNIQUE on ciphertext
type = "varchar(18)"

[[encrypt]]
column = "public.citizens.salary"
key = "citizens.salary"
algorithm = "sm4"
mode = "ope"                 # ranges, ORDER BY, min/max on ciphertext
type = "numeric(10,2)"
TOML

cat > "$run/warden.toml" <<TOML
# The demo configuration (see docs/CONFIG.md).
[admin]
listen = "127.0.0.1:9187"

[log]
format = "text"
level = "info"

[audit]
dir = "audit"
flush_interval_ms = 50

[[upstream]]
name = "demo"
protocol = "postgres"
listen = "127.0.0.1:6432"
server = "$pg_host:$pg_port"
policy = "policy.toml"               # which columns hold ciphertext

[upstream.client_tls]
mode = "allow"
cert = "warden.crt"
key = "warden.key"

[upstream.server_tls]
mode = "prefer"

[upstream.auth]
users_file = "users.txt"

[upstream.service]                 # warden's own login: reads the catalog, runs migrations
user = "warden_demo"
password_env = "WARDEN_DEMO_SERVICE_PASSWORD"
database = "warden_demo"

[keys]
keyring = "keyring.json"
master_key = { provider = "file", path = "master.key" }
TOML
export WARDEN_DEMO_SERVICE_PASSWORD="$demo_password"

"$warden" config check "$run/warden.toml"

say "Encrypting the existing plaintext online (batches, then a short swap)"
"$warden" encrypt --config "$run/warden.toml" public.citizens.id_card
"$warden" encrypt --config "$run/warden.toml" public.citizens.salary

say "Starting warden: clients connect to 127.0.0.1:6432, metrics on http://127.0.0.1:9187/metrics"
"$warden" serve --config "$run/warden.toml" 2>"$run/warden.log" &
warden_pid=$!
trap 'kill -TERM $warden_pid 2>/dev/null; wait $warden_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fs http://127.0.0.1:9187/readyz >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs http://127.0.0.1:9187/readyz >/dev/null || { cat "$run/warden.log"; exit 1; }

say "An application's session through warden (TLS, SCRAM-SHA-256 with channel binding)"
export PGPASSWORD="$demo_password"
psql "host=127.0.0.1 port=6432 user=warden_demo dbname=warden_demo sslmode=require channel_binding=require application_name=payroll" \
    -v ON_ERROR_STOP=1 -c "SELECT name, phone, id_card, salary FROM citizens WHERE id_card = '11010519491231002X'" \
    -c "INSERT INTO citizens (name, id_card, phone, salary) VALUES ('王五', '310101199001011234', '13700000000', 9800.00)" \
    -c "SELECT name, salary FROM citizens WHERE salary BETWEEN 9000 AND 13000 ORDER BY salary" \
    -c "UPDATE citizens SET salary = 13125.53 WHERE id_card = '440524188001010014'"
say "Arithmetic on ciphertext cannot give a right answer: warden refuses it, naming the column"
psql "host=127.0.0.1 port=6432 user=warden_demo dbname=warden_demo sslmode=require application_name=payroll" \
    -c "UPDATE citizens SET salary = salary * 1.05" 2>&1 | head -n 1 || true
say "What the database holds (a direct connection, behind warden's back): ciphertext only"
PGDB=warden_demo psql_admin -c "SELECT name, substring(id_card::text for 34) || '…', length(salary) FROM citizens ORDER BY id"
say "A wrong password is refused, and the attempt is audited"
PGPASSWORD=wrong psql "host=127.0.0.1 port=6432 user=warden_demo dbname=warden_demo sslmode=require" -c "SELECT 1" 2>&1 | tail -n 1 || true
sleep 0.3

say "The audit trail, as an auditor reads it (literals are redacted)"
"$warden" audit query --config "$run/warden.toml" --format table
say "Verifying the SM3 hash chain"
"$warden" audit verify --config "$run/warden.toml"

if [ "$wait_at_end" = 1 ]; then
    say "Warden is running. Try:"
    echo "  PGPASSWORD='$demo_password' psql 'host=127.0.0.1 port=6432 user=warden_demo dbname=warden_demo sslmode=require'"
    echo "  $warden audit query --config $run/warden.toml --user warden_demo --format table"
    echo "  curl -s http://127.0.0.1:9187/metrics | grep ^warden_"
    echo "Ctrl-C stops warden (it drains sessions and flushes the audit trail)."
    wait $warden_pid
fi
