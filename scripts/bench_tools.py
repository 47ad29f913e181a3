#!/usr/bin/env python3
"""Helpers for diffy's whole-process and pipeline benchmarks (see docs/benchmarks.md).

  patch FIXTURE OUTDIR COUNT      distinct plugins patched from the fixture library
  fleet DIR --hosts N --rows R [--format text|json]
                                  a fleet of saved evidence for the evidence-dir plugins
  count-registry CONFIG_DIR       how many entries plugins.json holds
  stash TRASH DIR...              move DIRs (if present) into TRASH, to be deleted later
  process-report OUTDIR           summarise scripts/bench-process.sh's measurements
  stacking-check DIFFY DUCKDB     diffy's report and DuckDB's ranking name the same hosts
  stacking-report OUTDIR          summarise scripts/bench-pipeline.sh's measurements
  criterion-report DIR            medians of the criterion benchmarks under DIR (target/criterion)

Medians come from the individual run times in hyperfine's JSON export.
"""

import argparse
import json
import math
import os
import random
import re
import statistics
import sys

# The fixture plugin's slots (tests/fixture-plugin/src/lib.rs), in the order tests/support patches
# them: the name first, because it contains the namespace's default.
SLOT_WIDTH = 40
SLOTS = ("diffy-fixture", "fixture-slug", "fixture")


def bench_plugin(index):
    """Name, CLI namespace and slug of the index-th generated plugin."""
    return (f"diffy-bench-{index:06d}", f"bench{index:06d}", f"bench-{index:06d}")


def slot(value):
    raw = value.encode()
    if len(raw) > SLOT_WIDTH:
        sys.exit(f"error: slot value {value!r} is longer than {SLOT_WIDTH} bytes")
    return raw.ljust(SLOT_WIDTH, b"_")


def patch(args):
    """Write COUNT patched copies: OUTDIR/<name>/lib<name>.so, skipping those already made."""
    with open(args.fixture, "rb") as f:
        fixture = f.read()
    for default in SLOTS:
        if slot(default) not in fixture:
            sys.exit(f"error: slot {default!r} not found in {args.fixture}")
    for index in range(args.start, args.start + args.count):
        name, namespace, slug_value = bench_plugin(index)
        directory = os.path.join(args.outdir, name)
        path = os.path.join(directory, "lib" + name.replace("-", "_") + ".so")
        if os.path.exists(path):
            continue
        data = fixture
        for default, value in zip(SLOTS, (name, slug_value, namespace)):
            data = data.replace(slot(default), slot(value))
        os.makedirs(directory, exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        print(path)


def stash(args):
    """Move each DIR into TRASH under a fresh name. Deleting a run's records just before the next
    run would make that run pay for it: ext4 scans recently deleted inodes when it allocates new
    ones (see docs/benchmarks.md)."""
    os.makedirs(args.trash, exist_ok=True)
    for directory in args.dirs:
        if os.path.exists(directory):
            target = os.path.join(args.trash, f"{len(os.listdir(args.trash)):06d}")
            os.rename(directory, target)


def count_registry(args):
    path = os.path.join(args.config_dir, "plugins.json")
    if not os.path.exists(path):
        print(0)
        return
    with open(path) as f:
        print(len(json.load(f)["plugins"]))


# ---------------------------------------------------------------------------------------------
# Fleets

WORDS = (
    "lib ssl crypt xml http curl z bz lz ma zstd gnu tls ssh net link dbus sys temp udev pam "
    "cap acl attr audit sel linux perl python ruby tcl gdk gtk glib cairo pango font config "
    "x11 xcb mesa drm gbm va vdpau pulse alsa jack sound icu idn psl nghttp brotli uv event "
    "sql lite pq mysql redis mongo ldap sasl krb gss k5 nss nspr p11 kit gcrypt gpg error "
    "assuan ksba npth tasn unistring ffi elf dw bpf nl mnl nftnl tables ip route snmp"
).split()
DESCRIPTIONS = (
    "shared library",
    "runtime files",
    "command-line tools",
    "development files",
    "common files",
    "utilities for the system",
    "support library",
    "daemon and client",
    "documentation",
    "plugin modules",
)


def package_rows(count, rng):
    """`dpkg -l`-like rows of 40 to 80 bytes, unique package names."""
    rows, seen = [], set()
    while len(rows) < count:
        name = "".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.4:
            name += str(rng.randint(0, 9))
        if name in seen:
            continue
        seen.add(name)
        arch = "all" if rng.random() < 0.2 else "amd64"
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 12)}-{rng.randint(1, 9)}"
        if rng.random() < 0.3:
            version += f"+deb12u{rng.randint(1, 5)}"
        row = f"ii  {name}:{arch}  {version}  {arch}  {rng.choice(DESCRIPTIONS)}"
        rows.append(row[:80])
    return rows


def package_object(row):
    """A `dpkg -l`-like row as osquery's deb_packages table gives it: an object of strings."""
    _, name_arch, version, arch, description = row.split("  ", 4)
    return {"name": name_arch.split(":")[0], "version": version, "arch": arch, "description": description}


def osquery_json(rows):
    """Rows as `osqueryi --json` writes them: an array with one object per line."""
    objects = ",\n".join("  " + json.dumps(package_object(row), separators=(",", ":")) for row in rows)
    return f"[\n{objects}\n]\n"


def fleet(args):
    """DIR/<host>/packages.txt (or, with --format json, packages.json as osqueryi --json writes
    it) for N hosts of R rows.

    Every host has the same R packages, except that one host in ten runs newer versions of 20 of
    them (a minority cluster) and one host in 97 has 3 packages no other host has.
    """
    rng = random.Random(args.seed)
    base = package_rows(args.rows, rng)
    newer = list(base)
    for index in rng.sample(range(len(base)), min(20, len(base))):
        newer[index] = re.sub(r"  (\d+)\.", lambda m: f"  {int(m.group(1)) + 1}.", newer[index], count=1)
    render = osquery_json if args.format == "json" else lambda rows: "\n".join(rows) + "\n"
    file_name = "packages.json" if args.format == "json" else "packages.txt"
    base_text = render(base)
    newer_text = render(newer)
    os.makedirs(args.dir, exist_ok=True)
    for host in range(args.hosts):
        name = f"host-{host:05d}"
        text = newer_text if host % 10 == 3 else base_text
        if host % 97 == 50:
            implants = [
                f"ii  implant{host}-{k}:amd64  0.0.{k}-1  amd64  dropped by the intruder"
                for k in range(3)
            ]
            text = render((newer if host % 10 == 3 else base) + implants)
        directory = os.path.join(args.dir, name)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, file_name), "w") as f:
            f.write(text)


def evidence_bytes(directory):
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith((".txt", ".json")):
                total += os.path.getsize(os.path.join(root, name))
    return total


# ---------------------------------------------------------------------------------------------
# Reports


def hyperfine_medians(*paths):
    """Medians per command name over every run in the given hyperfine exports (rounds)."""
    merged = {}
    for path in paths:
        with open(path) as f:
            for r in json.load(f)["results"]:
                entry = merged.setdefault(r["command"], {"command": r["command"], "times": []})
                entry["times"].extend(r["times"])
    return {c: statistics.median(r["times"]) for c, r in merged.items()}, merged


def ms(seconds):
    return f"{seconds * 1000:.2f}"


def verdict(ok):
    return "holds" if ok else "DOES NOT HOLD"


# The isolated variant of the plugin command that scripts/bench-process.sh times.
ISOLATED_COMMAND = "isolated: diffy --isolate-plugins sweeten count (1 plugin)"


def process_report(args):
    out = args.outdir
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    sizes = meta["sizes"]
    commands = meta["commands"]
    rounds = sorted(
        os.path.join(out, name)
        for name in os.listdir(out)
        if name.startswith("process-round") and name.endswith(".json")
    )
    medians, raw = hyperfine_medians(*rounds)
    opened = {}
    with open(os.path.join(out, "libraries.tsv")) as f:
        for line in f:
            n, command, count = line.rstrip("\n").split("\t")
            opened[(int(n), command)] = int(count)
    loads = []
    load_path = os.path.join(out, "load-activate.tsv")
    if os.path.exists(load_path):
        with open(load_path) as f:
            for line in f:
                n, load_us, activate_us = line.split()
                loads.append((int(n), int(load_us), int(activate_us)))

    def med(n, command):
        return medians.get(f"n={n} {command}")

    lines = []
    lines.append(f"diffy whole-process benchmark: {meta['date']}, {meta['machine']}")
    lines.append(
        f"hyperfine -N, {meta['rounds']} rounds of {meta['warmup']} warm-up and {meta['runs']} timed runs per command;"
        f" medians over all rounds in ms;"
        f" ratio = the median against the one-plugin median"
    )
    lines.append("")
    header = "| command | " + " | ".join(f"{n} plugins" for n in sizes)
    header += " | " + " | ".join(f"ratio {n}/1" for n in sizes if n > 1)
    header += " | libraries opened (" + "/".join(str(n) for n in sizes) + ") |"
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    for command in commands:
        cells = []
        for n in sizes:
            m = med(n, command)
            cells.append(ms(m) if m is not None else "n/a")
        ratios = []
        one = med(1, command)
        for n in sizes:
            if n > 1:
                m = med(n, command)
                ratios.append(f"{m / one:.2f}×" if m is not None and one else "n/a")
        counts = "/".join(
            str(opened[(n, command)]) if (n, command) in opened else "n/a" for n in sizes
        )
        lines.append(f"| `diffy {command}` | " + " | ".join(cells) + " | " + " | ".join(ratios) + f" | {counts} |")
    extra = [c for c in medians if not c.startswith("n=")]
    for command in extra:
        shown = command.replace("|", "\\|")
        lines.append(f"| `{shown}` | {ms(medians[command])} (reference) |")
    lines.append("")

    budgets = []
    no_plugin = [c for c in commands if c != meta["plugin_command"]]
    counts_ok = all(opened.get((n, c), 0) == 0 for n in sizes for c in no_plugin)
    budgets.append(
        (
            "Commands that need no plugin open no plugin library",
            counts_ok,
            "libraries opened by " + ", ".join(f"`{c}`" for c in no_plugin) + f" at {sizes}: "
            + ", ".join(str(opened.get((n, c), "n/a")) for c in no_plugin for n in sizes),
        )
    )
    plugin = meta["plugin_command"]
    biggest = max(sizes)
    one = med(1, plugin)
    if one is not None and biggest > 1:
        big = med(biggest, plugin)
        budgets.append(
            (
                f"With {biggest} registered plugins, `diffy {plugin}` costs at most 1.25× the same with one",
                big / one <= 1.25,
                f"{ms(big)} ms vs {ms(one)} ms: {big / one:.2f}×",
            )
        )
    version = med(1, "--version")
    if one is not None and version is not None:
        budgets.append(
            (
                f"`diffy {plugin}` costs at most 0.5 ms more than `diffy --version`",
                one - version <= 0.0005,
                f"{ms(one)} ms − {ms(version)} ms = {ms(one - version)} ms (1 plugin)",
            )
        )
        nu = medians.get("nu -c '1 | inc'")
        reference = nu if nu is not None else 0.035
        source = "measured" if nu is not None else "the figure docs/architecture.md gives for these machines"
        budgets.append(
            (
                "A plugin command's whole process is at least 10× faster than `nu -c '1 \\| inc'`",
                one * 10 <= reference,
                f"{ms(one)} ms vs {ms(reference)} ms ({source}): {reference / one:.1f}× faster",
            )
        )
        isolated = medians.get(ISOLATED_COMMAND)
        if isolated is not None:
            budgets.append(
                (
                    f"Isolated, `diffy {plugin}` is at least 5× faster than `nu -c '1 \\| inc'`",
                    isolated * 5 <= reference,
                    f"{ms(isolated)} ms isolated ({ms(isolated - one)} ms more than in process) vs "
                    f"{ms(reference)} ms ({source}): {reference / isolated:.1f}× faster",
                )
            )
    if loads:
        totals = [load + act for _, load, act in loads]
        m = statistics.median(totals)
        budgets.append(
            (
                "Loading and activating one plugin (integrity check included) under 0.5 ms, warm cache",
                m <= 500,
                f"median {m:.0f} µs over {len(totals)} runs of `diffy -v {plugin}` "
                f"(load {statistics.median(l for _, l, _ in loads):.0f} µs + activate "
                f"{statistics.median(a for _, _, a in loads):.0f} µs, as logged)",
            )
        )
    lines.append("| budget (docs/architecture.md) | verdict | evidence |")
    lines.append("|---|---|---|")
    for text, ok, evidence in budgets:
        lines.append(f"| {text} | {verdict(ok)} | {evidence} |")
    report = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(report)
    summary = {
        "meta": meta,
        "medians_s": medians,
        "libraries_opened": {f"n={n} {c}": v for (n, c), v in opened.items()},
        "load_activate_us": loads,
        "budgets": [{"budget": t, "holds": ok, "evidence": e} for t, ok, e in budgets],
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    sys.stdout.write(report)


def stacking_check(args):
    """diffy's report and DuckDB's ranking name the same hosts with rare rows, with the same
    scores; exit 1 when they do not."""
    with open(args.diffy) as f:
        report = json.load(f)
    mine = {h["target"]: round(h["score"], 3) for h in report["hosts"] if h["score"] > 0}
    theirs = {}
    with open(args.duckdb) as f:
        for line in f:
            host, _, score = json.loads(line)
            theirs[host] = round(score, 3)
    if mine != theirs:
        only_diffy = sorted(set(mine) - set(theirs))[:5]
        only_duckdb = sorted(set(theirs) - set(mine))[:5]
        differ = sorted(h for h in set(mine) & set(theirs) if mine[h] != theirs[h])[:5]
        sys.exit(
            f"error: diffy and DuckDB disagree: only diffy {only_diffy}, only DuckDB {only_duckdb}, "
            f"other scores {differ}"
        )
    print(f"   {len(mine)} hosts with rare rows, the same scores in both", file=sys.stderr)


def stacking_report(args):
    out = args.outdir
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)
    entries = []
    for size in meta["sizes"]:
        evidence = "JSON" if size.startswith("json-") else "text"
        hosts, rows = (int(x) for x in size.removeprefix("json-").split("x"))
        with open(os.path.join(out, f"fleet-{size}.json")) as f:
            info = json.load(f)
        entry = {"size": size, "evidence": evidence, "hosts": hosts, "rows_per_host": rows, "input_bytes": info["bytes"], "rows": info["rows"]}
        for tool in ("diffy", "duckdb"):
            walls, rss = [], []
            for run in range(1, meta["runs"] + 1):
                with open(os.path.join(out, f"time-{size}-{tool}-{run}.txt")) as f:
                    wall, kb = f.read().split()[-2:]
                walls.append(float(wall))
                rss.append(int(kb) * 1024)
            entry[tool] = {"median_s": statistics.median(walls), "walls": walls, "peak_rss_bytes": max(rss)}
        entry["speedup"] = entry["duckdb"]["median_s"] / entry["diffy"]["median_s"]
        entry["rss_over_input"] = entry["diffy"]["peak_rss_bytes"] / entry["input_bytes"]
        entries.append(entry)
    lines = [
        f"diffy vs DuckDB stacking: {meta['date']}, {meta['machine']}, diffy {meta['diffy']}, DuckDB {meta['duckdb']}",
        f"wall time: median of {meta['runs']} runs each, alternating; peak RSS: the largest of those runs (/usr/bin/time)",
        "",
        "| fleet | input | diffy wall | DuckDB wall | diffy faster | diffy peak RSS | DuckDB peak RSS | diffy RSS ÷ input | diffy growth |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    previous = None
    growth = {}
    for e in entries:
        grow = ""
        if previous and (previous["rows_per_host"], previous["evidence"]) == (e["rows_per_host"], e["evidence"]):
            exponent = math.log(e["diffy"]["median_s"] / previous["diffy"]["median_s"]) / math.log(e["hosts"] / previous["hosts"])
            growth[(previous["size"], e["size"])] = exponent
            grow = f"N^{exponent:.2f} from {previous['hosts']:,} hosts"
        previous = e
        lines.append(
            f"| {e['hosts']:,} hosts × {e['rows_per_host']:,} rows{' (JSON)' if e['evidence'] == 'JSON' else ''} | {e['input_bytes'] / 1e6:.0f} MB | "
            f"{e['diffy']['median_s']:.2f} s | {e['duckdb']['median_s']:.2f} s | {e['speedup']:.2f}× | "
            f"{e['diffy']['peak_rss_bytes'] / 1e6:.0f} MB | {e['duckdb']['peak_rss_bytes'] / 1e6:.0f} MB | "
            f"{e['rss_over_input']:.2f}× | {grow} |"
        )
    lines += ["", "| budget | verdict | evidence |", "|---|---|---|"]
    for e in entries:
        lines.append(
            f"| at least 3× faster than DuckDB at {e['size']} | {verdict(e['speedup'] >= 3)} | {e['speedup']:.2f}× |"
        )
    for (a, b), exponent in growth.items():
        lines.append(f"| time growth {a} → {b} at most N^1.05 | {verdict(exponent <= 1.05)} | N^{exponent:.2f} |")
    for e in entries:
        if e["hosts"] == 1000:
            lines.append(
                f"| under 1 s end to end at {e['size']} | {verdict(e['diffy']['median_s'] < 1)} | {e['diffy']['median_s']:.2f} s |"
            )
        if e["hosts"] == 10000:
            lines.append(
                f"| peak memory below DuckDB's at {e['size']} | {verdict(e['diffy']['peak_rss_bytes'] < e['duckdb']['peak_rss_bytes'])} | "
                f"{e['diffy']['peak_rss_bytes'] / 1e6:.0f} MB vs {e['duckdb']['peak_rss_bytes'] / 1e6:.0f} MB |"
            )
            lines.append(
                f"| peak memory under 1.5× the input at {e['size']} | {verdict(e['rss_over_input'] < 1.5)} | {e['rss_over_input']:.2f}× |"
            )
        if e["hosts"] == 100000:
            lines.append(
                f"| {e['size']} completes | {verdict(True)} | {e['diffy']['median_s']:.1f} s, {e['diffy']['peak_rss_bytes'] / 1e6:.0f} MB |"
            )
    report = "\n".join(lines) + "\n"
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(report)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"meta": meta, "results": entries}, f, indent=2)
    sys.stdout.write(report)


def duration(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def criterion_report(args):
    """One line per benchmark: the median time per iteration and its 95% confidence interval; for
    groups with a `plugin` and a `trait_object` benchmark, the ratio of their medians."""
    found = {}
    for root, _, files in os.walk(args.dir):
        if os.path.basename(root) == "new" and "estimates.json" in files:
            with open(os.path.join(root, "benchmark.json")) as f:
                full_id = json.load(f)["full_id"]
            with open(os.path.join(root, "estimates.json")) as f:
                found[full_id] = json.load(f)["median"]
    if not found:
        sys.exit(f"error: no criterion results under {args.dir}; run cargo bench -p diffy-core first")
    lines = ["| benchmark | median | 95% CI |", "|---|---|---|"]
    for full_id in sorted(found, key=lambda k: [int(p) if p.isdigit() else p for p in k.split("/")]):
        m = found[full_id]
        ci = m["confidence_interval"]
        lines.append(
            f"| `{full_id}` | {duration(m['point_estimate'])} | "
            f"{duration(ci['lower_bound'])} – {duration(ci['upper_bound'])} |"
        )
    ratios = []
    for full_id in sorted(found):
        if full_id.endswith("/plugin"):
            group = full_id[: -len("/plugin")]
            base = found.get(group + "/trait_object")
            if base:
                plugin_ns = found[full_id]["point_estimate"]
                base_ns = base["point_estimate"]
                ratios.append(
                    f"| `{group}` | {duration(base_ns)} | {duration(plugin_ns)} | "
                    f"{plugin_ns / base_ns:.1f}× | +{duration(plugin_ns - base_ns)} |"
                )
    if ratios:
        lines += ["", "| call | trait object | plugin | ratio | overhead |", "|---|---|---|---|---|"] + ratios
    sys.stdout.write("\n".join(lines) + "\n")


def fleet_info(args):
    rows = 0
    for root, _, files in os.walk(args.dir):
        for name in files:
            if name.endswith(".txt"):
                with open(os.path.join(root, name), "rb") as f:
                    rows += sum(1 for line in f if line.strip())
            elif name.endswith(".json"):
                with open(os.path.join(root, name)) as f:
                    rows += len(json.load(f))
    json.dump({"bytes": evidence_bytes(args.dir), "rows": rows}, sys.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("patch")
    p.add_argument("fixture")
    p.add_argument("outdir")
    p.add_argument("count", type=int)
    p.add_argument("--start", type=int, default=1)
    p.set_defaults(run=patch)
    p = sub.add_parser("fleet")
    p.add_argument("dir")
    p.add_argument("--hosts", type=int, required=True)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(run=fleet)
    p = sub.add_parser("fleet-info")
    p.add_argument("dir")
    p.set_defaults(run=fleet_info)
    p = sub.add_parser("stash")
    p.add_argument("trash")
    p.add_argument("dirs", nargs="+")
    p.set_defaults(run=stash)
    p = sub.add_parser("count-registry")
    p.add_argument("config_dir")
    p.set_defaults(run=count_registry)
    p = sub.add_parser("process-report")
    p.add_argument("outdir")
    p.set_defaults(run=process_report)
    p = sub.add_parser("stacking-check")
    p.add_argument("diffy")
    p.add_argument("duckdb")
    p.set_defaults(run=stacking_check)
    p = sub.add_parser("stacking-report")
    p.add_argument("outdir")
    p.set_defaults(run=stacking_report)
    p = sub.add_parser("criterion-report")
    p.add_argument("dir")
    p.set_defaults(run=criterion_report)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
