"""What a running NATS deployment says about itself on its monitoring ports.

A result must name the servers it was measured on: their versions, how many
nodes the JetStream cluster has, and the fsync policy, read from `/varz` and
`/jsz` of each node (whoever started them: this harness or the user).
"""

from __future__ import annotations

from typing import Any

import httpx


def _json(client: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        r = client.get(url)
        return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def merge_descriptions(into: dict[str, str], more: dict[str, str]) -> None:
    """Several deployments in one run (R1 on one node, R3 on three): every distinct value, in order seen."""
    for key, value in more.items():
        seen = [v for v in into.get(key, "").split("; ") if v]
        if value not in seen:
            seen.append(value)
        into[key] = "; ".join(seen)


def describe_servers(monitor_urls: str, timeout: float = 2.0) -> dict[str, str]:
    """`nats_servers` (name@version per node), `nats_cluster_size`, `nats_sync`, `nats_meta_leader`.

    `monitor_urls`: one base URL or several, comma-separated. Nodes that do
    not answer are named as such, not skipped.
    """
    names, syncs, sizes, leaders = [], set(), set(), set()
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for base in [u.strip().rstrip("/") for u in monitor_urls.split(",") if u.strip()]:
            varz = _json(client, f"{base}/varz")
            if varz is None:
                names.append(f"{base} (no answer)")
                continue
            names.append(f"{varz.get('server_name', '?')}@{varz.get('version', '?')}")
            js = (varz.get("jetstream") or {}).get("config") or {}
            interval_s = round(int(js.get("sync_interval", 0) or 0) / 1e9, 3)
            syncs.add("always" if js.get("sync_always") else f"every {interval_s:g} s")
            meta = (_json(client, f"{base}/jsz") or {}).get("meta_cluster") or {}
            sizes.add(str(meta.get("cluster_size") or 1))
            if meta.get("leader"):
                leaders.add(str(meta["leader"]))
    return {
        "nats_servers": ", ".join(names) or "none",
        "nats_cluster_size": ",".join(sorted(sizes)) or "unknown",
        "nats_sync": ",".join(sorted(syncs)) or "unknown",
        "nats_meta_leader": ",".join(sorted(leaders)) or "-",
    }
