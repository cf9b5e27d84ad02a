"""The Monitor's snapshot as one viewer may see it: the machine's figures are everyone's (the load is the
machine's), but a job is its owner's. An admin sees each job's owner named beside it; a user sees their own
jobs as they are and another user's only as "another user's job" (no model name, data file or command line).
"""
from __future__ import annotations

import copy

from ..accounts import User

HIDDEN = "another user's job"


def snapshot_for(engine, actor: User, snap: dict | None) -> dict | None:
    """A copy of `snap` (sampler.latest()) with job labels shown to `actor` as the rules above say."""
    if snap is None:
        return None
    job_ids = {p["job_id"] for p in snap.get("processes", []) if p.get("job_id") is not None}
    if not job_ids:
        return snap
    marks = ",".join("?" * len(job_ids))
    owners = {r["id"]: r["owner"] for r in engine.store.query(f"SELECT id, owner FROM jobs WHERE id IN ({marks})",
                                                                tuple(job_ids))}
    names = engine.accounts.names() if actor.is_admin else {}
    view = copy.deepcopy(snap)

    def shown(job_id: int, label: str) -> str:
        owner = owners.get(job_id)
        if actor.is_admin:
            return f"{label} · {names.get(owner, '?')}"
        return label if owner == actor.id else HIDDEN

    for process in view.get("processes", []):
        if process.get("job_id") is not None:
            process["label"] = shown(process["job_id"], process["label"])
            if not actor.is_admin and owners.get(process["job_id"]) != actor.id:
                process["command"] = ""
    for key, part in view.get("llmos", {}).items():
        if key.startswith("job "):
            part["label"] = shown(int(key.split()[1]), part["label"])
    return view
