"""Instructions per request by component from a callgrind dump (benches/callgrind.sh).

Usage: python3 benches/callgrind_components.py CALLGRIND_OUT REQUESTS SCENARIO   -> one JSON object on stdout
       python3 benches/callgrind_components.py --table SCENARIO.json ...          -> a Markdown table

Every instruction (callgrind's self cost, Ir) is put into one component by the source file it was compiled from —
so code inlined across crates by LTO counts where it was written (hyper's parser inlined into a veil function is
hyper) — and, for code of Rust's standard library (inlined everywhere), by the crate of the function it was
inlined into; C libraries without line tables by their function name (malloc, memcpy, SQLite's sqlite3*).
Python 3.11 standard library only.
"""

import json
import re
import sys
from collections import defaultdict

# (component, patterns matched against a source file path), first match wins.
FILES = [
    ("TLS (rustls, aws-lc)", ("/rustls-", "/tokio-rustls-", "/hyper-rustls-", "/aws-lc-", "/rustls-pki-types")),
    ("hyper + hyper-util (HTTP/1 server, client pool)", ("/hyper-", "/httparse-", "/h2-", "/want-", "/try-lock-")),
    ("http types (header maps, URIs)", ("/http-1.", "/http-body", "/httpdate-")),
    ("tokio (scheduler, I/O, timers, channels)", ("/tokio-1.", "/mio-", "/tokio-util-", "/parking_lot", "/futures-")),
    ("store (SQLite, sqlx)", ("/sqlx-", "/libsqlite3-sys-", "sqlite3.c", "/sqlite3/", "/postgres", "/flume-")),
    ("crypto: SHA-256 (HMAC fingerprints, audit chain)", ("/sha2-", "/hmac-", "/digest-", "/block-buffer-")),
    ("crypto: Ed25519 (audit signatures, with its SHA-512)", ("/ed25519", "/curve25519")),
    ("crypto: AES-GCM-SIV, HKDF, other", (
        "/aes-gcm-siv-", "/aes-0.", "/polyval-", "/universal-hash-", "/cipher-", "/ctr-", "/hkdf-", "/subtle-",
        "/crypto-common-", "/src/crypto/")),
    ("audit (lines, chain, writer)", ("/src/vault/audit/",)),
    ("serde / serde_json", ("/serde_json-", "/serde-1.", "/serde_core-")),
    ("JSON rewrite (tape, selectors, splice)", ("/src/rewrite/",)),
    ("detection", ("/src/detect",)),
    ("vault engine (known values, tokens, seal)", ("/src/vault/", "/src/token/", "/src/domain/", "/src/budget.rs")),
    ("store (SQLite, sqlx)", ("/src/store/",)),
    ("metrics, logging", ("/prometheus-", "/tracing", "/src/metrics.rs")),
    ("veil proxy (routing, headers, forwarding)", ("/src/",)),
    ("bytes, hashing, other crates", ("/.cargo/registry/", "/cargo/registry/")),
]
# Crate prefixes of (demangled) function names, for code of Rust's standard library inlined into them.
CRATES = [
    ("TLS (rustls, aws-lc)", ("rustls", "tokio_rustls", "hyper_rustls", "aws_lc")),
    ("hyper + hyper-util (HTTP/1 server, client pool)", ("hyper", "hyper_util", "httparse", "want")),
    ("http types (header maps, URIs)", ("http",)),
    ("tokio (scheduler, I/O, timers, channels)", ("tokio", "mio", "futures_util", "futures_core")),
    ("store (SQLite, sqlx)", ("sqlx_core", "sqlx_sqlite", "sqlx_postgres", "sqlx", "libsqlite3_sys", "flume")),
    ("crypto: SHA-256 (HMAC fingerprints, audit chain)", ("sha2", "hmac", "digest")),
    ("crypto: Ed25519 (audit signatures, with its SHA-512)", ("ed25519_dalek", "curve25519_dalek")),
    ("crypto: AES-GCM-SIV, HKDF, other", ("aes_gcm_siv", "aes", "polyval", "veil::crypto")),
    ("audit (lines, chain, writer)", ("veil::vault::audit",)),
    ("serde / serde_json", ("serde_json", "serde")),
    ("JSON rewrite (tape, selectors, splice)", ("veil::rewrite",)),
    ("detection", ("veil::detect",)),
    ("vault engine (known values, tokens, seal)", ("veil::vault", "veil::token", "veil::domain", "veil::budget")),
    ("store (SQLite, sqlx)", ("veil::store",)),
    ("metrics, logging", ("prometheus", "tracing", "tracing_core", "veil::metrics")),
    ("veil proxy (routing, headers, forwarding)", ("veil",)),
]
ALLOC = re.compile(r"^(malloc|free|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|"
                   r"tcache_|unlink_chunk|__libc_malloc|__libc_free|__libc_realloc|__libc_calloc|cfree|"
                   r"__rust_alloc|__rust_dealloc|__rust_realloc|__rdl_|_int_free_|arena_get|sysmalloc)")
MEM = re.compile(r"^(__)?(memcpy|memmove|memset|memcmp|bcmp|__memcpy|__memmove|__memset|__memcmp)")
STD = ("/rustc/", "/library/core/", "/library/alloc/", "/library/std/")
ORDER = list(dict.fromkeys(c for c, _ in FILES)) + ["allocator (malloc/free)", "memcpy/memmove/memset (libc)", "libc, kernel entry, other"]


def component(path, fn, obj):
    name = fn.split("(")[0]
    # aws-lc's assembly (AES-GCM, SHA) has no line tables: by its symbols' prefix.
    if "aws_lc" in name or "/aws-lc" in path:
        return "TLS (rustls, aws-lc)"
    if "sha512" in name:
        return "crypto: Ed25519 (audit signatures, with its SHA-512)"
    if ALLOC.match(name) or "alloc::alloc::" in name and "dealloc" in name:
        return "allocator (malloc/free)"
    if MEM.match(name):
        return "memcpy/memmove/memset (libc)"
    if name.startswith("sqlite3") or "libsqlite3" in obj:
        return "store (SQLite, sqlx)"
    if path and not any(s in path for s in STD) and path != "???":
        for comp, pats in FILES:
            if any(p in path for p in pats):
                return comp
    bare = name.lstrip("<").replace("_<", "<")
    for comp, prefixes in CRATES:
        for pre in prefixes:
            if bare.startswith(pre + "::") or bare == pre or re.search(r"[<( ]" + re.escape(pre) + "::", name):
                return comp
    if path and not any(s in path for s in STD) and path != "???":
        return "bytes, hashing, other crates"
    return "libc, kernel entry, other"


def parse(path):
    """Self cost (Ir) per (file, function, object)."""
    names = {"fl": {}, "fn": {}, "ob": {}}
    cost = defaultdict(int)
    cur = {"ob": "", "fl": "", "fn": "", "file": ""}
    skip_next = False
    pat = re.compile(r"^\((\d+)\)(?: (.*))?$")

    def name(kind, value):
        m = pat.match(value)
        if not m:
            return value
        table = names["fl" if kind in ("fl", "fi", "fe", "cfi", "cfl") else kind.lstrip("c")]
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
        return table.get(m.group(1), "?")

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2:
                    cost[(cur["file"], cur["fn"], cur["ob"])] += int(parts[1])
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                cur["ob"] = name("ob", value)
            elif key == "fl":
                cur["fl"] = cur["file"] = name("fl", value)
            elif key in ("fi", "fe"):
                cur["file"] = name(key, value)
            elif key == "fn":
                cur["fn"] = name("fn", value)
                cur["file"] = cur["fl"]
            elif key in ("cob", "cfi", "cfl", "cfn"):
                name(key, value)  # registers the compressed name
            elif key == "calls":
                skip_next = True  # the next cost line is the call's inclusive cost
    return cost


def analyse(path, requests, scenario):
    cost = parse(path)
    by_comp = defaultdict(int)
    by_fn = defaultdict(int)
    for (file, fn, obj), ir in cost.items():
        by_comp[component(file, fn, obj)] += ir
        by_fn[(fn, component(file, fn, obj))] += ir
    total = sum(by_comp.values())
    n = max(requests, 1)
    top = sorted(by_fn.items(), key=lambda kv: -kv[1])[:40]
    return {
        "scenario": scenario,
        "requests": requests,
        "instructions_per_request": round(total / n),
        "components": {k: round(v / n) for k, v in sorted(by_comp.items(), key=lambda kv: -kv[1])},
        "top_functions": [{"fn": f[:160], "component": comp, "per_request": round(v / n)} for (f, comp), v in top],
    }


def table(paths):
    runs = [json.load(open(p, encoding="utf-8")) for p in paths]
    comps = [c for c in ORDER if any(r["components"].get(c) for r in runs)]
    comps += sorted({c for r in runs for c in r["components"]} - set(comps))
    out = ["| component | " + " | ".join(r["scenario"] for r in runs) + " |",
           "|---|" + "---:|" * len(runs)]
    for c in comps:
        cells = []
        for r in runs:
            v = r["components"].get(c, 0)
            share = v / max(r["instructions_per_request"], 1) * 100
            cells.append(f"{v / 1000:,.1f}k ({share:.0f}%)" if v else "—")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    out.append("| **total per request** | " + " | ".join(f"**{r['instructions_per_request'] / 1000:,.1f}k**"
                                                    for r in runs) + " |")
    out.append("| requests counted | " + " | ".join(f"{r['requests']:,}" for r in runs) + " |")
    return "\n".join(out)


def main():
    if sys.argv[1] == "--table":
        print(table(sys.argv[2:]))
    else:
        print(json.dumps(analyse(sys.argv[1], int(sys.argv[2]), sys.argv[3]), indent=1))


if __name__ == "__main__":
    main()
