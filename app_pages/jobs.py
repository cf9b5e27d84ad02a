"""Jobs: running jobs with live progress and log, the queue with why each job waits, history, and one job.

Jobs belong to the engine, not to this page: closing the browser stops nothing. The live part is a
fragment that redraws every 2 s; every action goes through engine.scheduler.
"""
from __future__ import annotations

import json
import time

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmos_core import access
from llmos_core.errors import InvalidInput
from llmos_core.present import format_bytes, format_duration
from llmos_core.jobs.kinds import KINDS
from llmos_core.jobs.scheduler import FINISHED, RESUMABLE_STATES, with_eta
from app_pages import _cluster_view as cluster_view
from app_pages._shared import acting_user, engine, error_boundary

eng = engine()
user = acting_user()
sched = eng.scheduler.for_user(user)   # this user's jobs only (an admin: all)


def owner_column(job: dict) -> dict:
    """An admin sees whose each job is."""
    return {"owner": eng.accounts.names().get(job.get("owner", 0), "?")} if user.is_admin else {}
st.title(":material/work_history: Jobs")


def when(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def read_params(text: str) -> dict:
    try:
        params = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the parameters are not valid JSON: {exc}", 'write them like {"seconds": 10}') from exc
    if not isinstance(params, dict):
        raise InvalidInput("the parameters must be a JSON object", 'write them like {"seconds": 10}')
    return params


# ---- the live part: scheduler, running jobs, queue ----
@st.fragment(run_every=2.0)
def live() -> None:
    if not sched.is_alive():
        st.warning("No scheduler is running for this data folder, so queued jobs wait. It runs inside the app's "
                   "engine; if another process holds the engine, start `python -m llmos_core jobs run` there.",
                   icon=":material/warning:")
    if eng.cluster is None:
        cap = sched.capacity("cpu")
        st.caption(f"Free for new jobs: **{format_bytes(cap['available_bytes'])}** of RAM (measured free "
                   f"{format_bytes(cap['free_bytes'])}, running jobs have {format_bytes(cap['jobs_reserved_bytes'])} "
                   f"more reserved, {format_bytes(cap['reserve_bytes'])} kept for the system)")
    else:   # jobs run on a Ray cluster: Ray places them by the memory they ask for; its nodes and their jobs
        with error_boundary("Reading the cluster"):
            cap = sched.capacity("cpu")
            st.caption(f"Free for new jobs on the cluster: **{format_bytes(cap['available_bytes'])}** of the nodes' "
                       f"{format_bytes(cap['total_bytes'])} of Ray memory (running jobs have "
                       f"{format_bytes(cap['jobs_reserved_bytes'])} reserved); Ray places each job on a node that has it")
            cluster_view.draw(eng.cluster, "jobs")

    running = [with_eta(j) for j in sched.list(states=["running"])]
    queued = sched.queue()
    # A job started or ended since the last redraw: redraw the whole page, so history and details follow.
    live_ids = (tuple(j["id"] for j in running), tuple(j["id"] for j in queued))
    previous = st.session_state.get("jobs_live_ids")
    st.session_state["jobs_live_ids"] = live_ids
    if previous is not None and previous != live_ids:
        st.rerun()
    st.subheader(f"Running ({len(running)})")
    if not running:
        st.caption("Nothing is running.")
    for job in running:
        with st.container(border=True, key=f"jobs_running_{job['id']}"):
            head, button = st.columns([5, 1])
            head.markdown(f"**Job {job['id']}** · {job['kind']} · {job['description']}")
            usage = sched.usage(job["id"])
            now_rss = usage[-1]["rss_bytes"] if usage else None
            head.progress(min(max(job["progress"], 0.0), 1.0), text=job["message"] or "running")
            head.caption(f"started {when(job['started'])} · ETA {format_duration(job['eta_s'])} · uses "
                         f"{format_bytes(now_rss)} of {format_bytes(job['est_memory'])} estimated · pid {job['pid']}"
                         + (f" · Ray job {job['ray_job_id']}" if job["ray_job_id"] else "")
                         + (" · cancelling" if job["cancel_requested"] else ""))
            if button.button("Cancel", key=f"jobs_cancel_{job['id']}", icon=":material/stop_circle:",
                             disabled=job["cancel_requested"]):
                with error_boundary("Cancelling"):
                    sched.cancel(job["id"])
                    st.rerun()
            st.code(sched.log_tail(job["id"], 12) or "(no log yet)", language=None)

    st.subheader(f"Queue ({len(queued)})")
    if not queued:
        st.caption("Nothing is waiting.")
        return
    rows = [{"position": j["position"], "id": j["id"], "kind": j["kind"], "description": j["description"],
             "priority": j["priority"], "needs": format_bytes(j["est_memory"]),
             "starts in about": format_duration(j["eta_s"]), "waits because": sched.waiting_reason(j["id"]),
             **owner_column(j)}
            for j in queued]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="jobs_queue_table")


live()

# ---- submit: raw parameters reach any file and any knob, so only with LLMOS_ADMIN=1 ----
admin = access.admin_enabled()
if admin:
    with st.expander("Submit a job", icon=":material/add_task:"):
        st.caption("Training and translation pages submit their own jobs; here any kind can be queued with its "
                   "parameters as JSON. The `benchmark` kind holds memory for a while: useful to try the scheduler.")
        with st.form("jobs_submit_form"):
            kind = st.selectbox("Kind", sorted(KINDS), key="jobs_submit_kind")
            params_text = st.text_area("Parameters (JSON)", '{"memory_mb": 200, "seconds": 30}', key="jobs_submit_params")
            priority = st.number_input("Priority (higher starts first)", -100, 100, 0, key="jobs_submit_priority")
            if st.form_submit_button("Submit", icon=":material/send:", type="primary"):
                with error_boundary("Submitting"):
                    job_id = sched.submit(kind, read_params(params_text), int(priority), origin="web")
                    st.session_state["jobs_selected"] = job_id
                    st.success(f"Job {job_id} queued.", icon=":material/check_circle:")
else:
    st.caption(":material/lock: Submitting or re-running a job with raw JSON parameters needs LLMOS_ADMIN=1; the "
               "Train and Translate pages start their own jobs.")

# ---- history ----
st.subheader("History")
filters = st.columns(2)
states = filters[0].multiselect("State", FINISHED, default=list(FINISHED), key="jobs_filter_states")
kinds = filters[1].multiselect("Kind", sorted(KINDS), key="jobs_filter_kinds")
history = [j for j in sched.list(states=states or None) if not kinds or j["kind"] in kinds]
if history:
    st.dataframe(pd.DataFrame([{"id": j["id"], "kind": j["kind"], "state": j["state"], "description": j["description"],
                                "finished": when(j["finished"]), "exit code": j["exit_code"],
                                "peak memory": format_bytes(j["peak_memory"]), "Ray job": j["ray_job_id"] or "",
                                "message": j["message"], **owner_column(j)}
                               for j in history]), hide_index=True, width="stretch", key="jobs_history_table")
else:
    st.caption("No finished job matches.")

# ---- one job ----
st.subheader("Job details")
all_jobs = sched.list()
if not all_jobs:
    st.info("No jobs yet. Start a training or a translation, or submit a benchmark above.", icon=":material/info:")
    st.stop()
labels = {j["id"]: f"Job {j['id']} · {j['kind']} · {j['state']}" for j in all_jobs}
if st.session_state.get("jobs_selected") not in labels:
    st.session_state["jobs_selected"] = all_jobs[0]["id"]
job_id = st.selectbox("Job", list(labels), format_func=labels.get, key="jobs_selected")
with error_boundary("Showing the job"):
    job = sched.get(job_id)
    st.markdown(f"**{job['description']}** · state **{job['state']}** · priority {job['priority']} · "
                f"{job['device'].upper()} · created {when(job['created'])} · runs {job['runs']}")
    if job["state"] == "queued":
        st.info(sched.waiting_reason(job_id) or "about to start", icon=":material/hourglass_top:")
    elif job["state"] == "failed":
        st.error(f"{job['message']} (exit code {job['exit_code']})", icon=":material/error:")
    elif job["message"]:
        st.caption(job["message"])

    actions = st.columns(4)
    if actions[0].button("Cancel", key="jobs_detail_cancel", icon=":material/stop_circle:",
                         disabled=job["state"] not in ("queued", "running")):
        with error_boundary("Cancelling"):
            sched.cancel(job_id)
            st.rerun()
    if actions[1].button("Resume", key="jobs_detail_resume", icon=":material/resume:",
                         disabled=not (job["state"] in RESUMABLE_STATES and job["resumable"]),
                         help="continue from its last checkpoint"):
        with error_boundary("Resuming"):
            sched.resume(job_id)
            st.rerun()
    if actions[2].button("Delete", key="jobs_detail_delete", icon=":material/delete:",
                         disabled=job["state"] == "running", help="forget the job and delete its files"):
        with error_boundary("Deleting"):
            sched.delete(job_id)
            del st.session_state["jobs_selected"]
            st.rerun()
    rerun = actions[3].toggle("Re-run with edits", key="jobs_detail_rerun", disabled=not admin,
                              help=None if admin else "needs LLMOS_ADMIN=1")

    if rerun and admin:
        with st.form("jobs_rerun_form"):
            text = st.text_area("Parameters (JSON)", json.dumps(job["params"], indent=2), height=200,
                                key=f"jobs_rerun_params_{job_id}")
            new_priority = st.number_input("Priority", -100, 100, int(job["priority"]), key=f"jobs_rerun_priority_{job_id}")
            if st.form_submit_button("Submit as a new job", icon=":material/replay:", type="primary"):
                with error_boundary("Re-running"):
                    new_id = sched.submit(job["kind"], read_params(text), int(new_priority), rerun_of=job_id,
                                          origin="web")
                    st.session_state["jobs_selected"] = new_id
                    st.rerun()

    left, right = st.columns(2)
    left.markdown("**Parameters**")
    left.json(job["params"], expanded=False)
    if job["result"]:
        right.markdown("**Result**")
        right.json(job["result"], expanded=False)

    usage = sched.usage(job_id)
    if usage:
        frame = pd.DataFrame(usage)
        frame["time"] = pd.to_datetime(frame["ts"], unit="s")
        figure = go.Figure()
        figure.add_scatter(x=frame["time"], y=frame["rss_bytes"] / 1024**2, name="memory (MB)")
        figure.add_scatter(x=frame["time"], y=frame["cpu_percent"], name="CPU (%)", yaxis="y2")
        figure.update_layout(title="Resource use", height=280, margin=dict(t=40, b=20),
                             yaxis=dict(title="MB"), yaxis2=dict(title="% of a core", overlaying="y", side="right"))
        st.plotly_chart(figure, key="jobs_usage_chart")
    metrics = sched.metrics(job_id)
    if metrics:
        frame = pd.DataFrame(metrics)
        figure = go.Figure()
        for column in [c for c in frame.columns if c not in ("step", "ts") and pd.api.types.is_numeric_dtype(frame[c])]:
            figure.add_scatter(x=frame["step"], y=frame[column], name=column)
        figure.update_layout(title="Metrics by step", height=280, margin=dict(t=40, b=20))
        st.plotly_chart(figure, key="jobs_metrics_chart")

    st.markdown("**Log**" + (f" · `{job['log_path']}`" if job["log_path"] else ""))
    st.code(sched.log_tail(job_id, 200) or "(empty)", language=None)
