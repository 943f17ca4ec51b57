"""A psycopg 3 client session for the warden integration tests.

Run by tests/tests/pg_clients.rs with the connection string in WARDEN_TEST_DSN and a table
name that is unique to the run in WARDEN_TEST_TABLE. It does what an application would do
(executemany, COPY in and out, a server-side cursor, binary fetches, SET) and prints what it
observed as one JSON object; the Rust test decides what is right. Any exception fails the run.
"""

import json
import os
from decimal import Decimal

import psycopg


def main():
    dsn = os.environ["WARDEN_TEST_DSN"]
    table = os.environ["WARDEN_TEST_TABLE"]
    seen = {"libpq_version": psycopg.pq.version()}
    if psycopg.pq.version() >= 160000:
        # libpq 16+ can insist on the mechanism: a proxy that fell back to a cleartext
        # password or md5 would fail here.
        dsn += " require_auth=scram-sha-256"
        seen["require_auth"] = "scram-sha-256"

    with psycopg.connect(dsn) as conn:
        seen["ssl_in_use"] = conn.pgconn.ssl_in_use
        seen["application_name"] = conn.info.parameter_status("application_name")
        seen["server_version"] = conn.info.server_version

        with conn.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {table} (id int PRIMARY KEY, name text, score numeric, data bytea)"
            )
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
                [(i, f"name {i}", Decimal(i) / 4, bytes([i % 256]) * (i % 50)) for i in range(1, 501)],
            )
        conn.commit()

        with conn.cursor() as cur:
            with cur.copy(f"COPY {table} (id, name, score, data) FROM STDIN") as copy:
                for i in range(501, 2001):
                    copy.write_row((i, f"copied\t{i}", i, b"\x00\x01\xff"))
        conn.commit()

        with conn.cursor() as cur:
            with cur.copy(f"COPY (SELECT id, name FROM {table} ORDER BY id) TO STDOUT") as copy:
                copied_out = [row for row in copy.rows()]
        seen["copy_out_rows"] = len(copied_out)
        seen["copy_out_last"] = list(copied_out[-1])

        with conn.transaction():
            with conn.cursor(name="server_side") as cur:
                cur.itersize = 128
                cur.execute(f"SELECT id FROM {table} ORDER BY id")
                ids = [row[0] for row in cur]
        seen["server_cursor_count"] = len(ids)
        seen["server_cursor_in_order"] = ids == sorted(ids) and ids[0] == 1

        with conn.cursor(binary=True) as cur:
            cur.execute(
                f"SELECT id, name, score, data, now() IS NOT NULL FROM {table} WHERE id = %s",
                (42,),
            )
            row = cur.fetchone()
        seen["binary_row"] = [row[0], row[1], str(row[2]), row[3].hex(), row[4]]

        conn.execute("SET application_name = 'psycopg-renamed'")
        seen["renamed"] = conn.info.parameter_status("application_name")

        try:
            conn.execute("SELECT 1/0")
        except psycopg.errors.DivisionByZero as e:
            seen["error_sqlstate"] = e.sqlstate
        conn.rollback()
        seen["after_error"] = conn.execute("SELECT 'still usable'").fetchone()[0]

        conn.execute(f"DROP TABLE {table}")
        conn.commit()

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
