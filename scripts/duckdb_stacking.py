"""The stacking query a responder would run instead of diffy: DuckDB over the same evidence.

    python3 scripts/duckdb_stacking.py FLEET_DIR [--threads 2] [--command packages] [--max-share 0.1]
                                             [--format text|json]

Reads FLEET_DIR/<host>/<command>.txt with read_csv (one column: the line), or with --format json
FLEET_DIR/<host>/<command>.json with read_json (an array of objects, as `osqueryi --json` writes
it; a row is the object), counts on how many hosts each distinct row appears, and ranks the hosts
by their rare rows (on at most max-share of the hosts, each weighing 1 - share), as local-cluster
does. Prints the ranked hosts as JSON lines: [host, rare rows, score].
"""

import argparse
import json
import sys

import duckdb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("fleet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--command", default="packages")
    parser.add_argument("--max-share", type=float, default=0.1)
    parser.add_argument("--format", choices=["text", "json"], default="text")
    args = parser.parse_args()
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET preserve_insertion_order = false")
    extension = "json" if args.format == "json" else "txt"
    files = f"{args.fleet}/*/{args.command}.{extension}".replace("'", "''")
    if args.format == "json":
        # Each array element as one value (records = false), its text the row.
        source = f"""
            SELECT DISTINCT string_split(filename, '/')[-2] AS host, json::VARCHAR AS row
            FROM read_json('{files}', format = 'array', records = false, filename = true)
        """
    else:
        source = f"""
            SELECT DISTINCT string_split(filename, '/')[-2] AS host, row
            FROM read_csv('{files}', columns = {{'row': 'VARCHAR'}}, header = false,
                          delim = '\\t', quote = '', escape = '', filename = true,
                          auto_detect = false)
            WHERE trim(row) <> ''
        """
    query = f"""
        WITH rows AS ({source}),
        counts AS (SELECT row, count(*) AS hosts FROM rows GROUP BY row),
        fleet AS (SELECT count(DISTINCT host) AS n FROM rows)
        SELECT host, count(*) AS rare, round(sum(1 - counts.hosts / fleet.n), 4) AS score
        FROM rows JOIN counts USING (row) CROSS JOIN fleet
        WHERE counts.hosts <= {args.max_share} * fleet.n + 1e-9
        GROUP BY host
        ORDER BY score DESC, host
    """
    out = sys.stdout
    for host, rare, score in con.execute(query).fetchall():
        out.write(json.dumps([host, rare, score]) + "\n")


if __name__ == "__main__":
    main()
