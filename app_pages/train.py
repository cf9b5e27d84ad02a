"""Train: upload data, pick a model and a preset, see the estimate, launch; watch loss, rate, tokens/s
and the job's load live; compare before and after; the result goes to the catalog (Chat, Translate).

The run is a scheduler job: it lives on after the browser closes. This page only reads the store
(metrics, usage, log) and calls engine.scheduler; the live part is a fragment that redraws every 2 s.
"""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from llmos_core.present import format_bytes, format_duration
from llmos_core.jobs.scheduler import FINISHED, RESUMABLE_STATES, with_eta
from llmos_core.models.catalog import CAUSAL_LM, DEFAULT_BASE_MODEL
from llmos_core.training import job as train_job
from llmos_core.training.export import describe_export
from llmos_core.training.params import PREFERENCE_METHODS, PRESETS, help_text
from llmos_core.usecases import datasets
from llmos_core.usecases import train as train_usecase
from llmos_core.usecases.models import model_names
from app_pages import _train_documents as train_documents
from app_pages import _train_evaluation as train_evaluation
from app_pages._shared import acting_user, engine, error_boundary

eng = engine()
user = acting_user()
sched = eng.scheduler.for_user(user)   # this user's jobs only (an admin: all)
st.title(":material/model_training: Train")
st.write("Fine-tune a model on your own text. The run is a job: it goes on if you close the page, and "
         "Stop keeps a checkpoint that Resume continues from.")

# ================================================================ 1. data
st.subheader("1. Data")
if train_documents.choose_source() == train_documents.DOCUMENTS:
    train_documents.render(eng)
    st.stop()
upload = st.file_uploader("Plain text, JSONL (text, prompt/response, or chat messages) or CSV",
                          type=list(datasets.FILE_TYPES), key="train_upload",
                          max_upload_size=eng.settings.max_upload_mb)
if upload is not None and st.session_state.get("train_uploaded") != (upload.name, upload.size):
    with error_boundary("Saving the upload"):
        kept = datasets.upload_dataset(eng.settings, user, upload.name, upload.getvalue())
        st.session_state["train_uploaded"] = (upload.name, upload.size)
        st.session_state["train_dataset"] = kept.name   # select what was just uploaded

saved = [d.name for d in datasets.list_datasets(eng.settings, user)]
if not saved:
    st.info("Upload a data file to begin. Text is packed into blocks; prompt/response pairs train only on "
            "the response.", icon=":material/upload_file:")
    st.stop()
if st.session_state.get("train_dataset") not in saved:
    st.session_state["train_dataset"] = saved[-1]
data_file = datasets.find_dataset(eng.settings, user,
                                  st.selectbox("Data file (uploads are kept in the data folder)", saved,
                                               key="train_dataset"))
data_path = data_file.path

mapping: dict = {}
columns: list[str] = []
with error_boundary("Reading the columns"):
    columns = datasets.columns(data_file)
if columns:
    for col, role in zip(st.columns(len(train_usecase.ROLES)), train_usecase.ROLES):
        picked = col.selectbox(f"{role} column", ["(auto)"] + columns, key=f"train_map_{role}",
                               help="which field holds this; (auto) finds the usual names")
        if picked != "(auto)":
            mapping[role] = picked
dataset = None
with error_boundary("Reading the data"):
    dataset = datasets.read_dataset(data_file, mapping)
if dataset is None:
    st.stop()
st.caption(f"**{dataset.rows}** rows of **{dataset.shape.replace('_', '/')}** examples")
st.dataframe(pd.DataFrame(dataset.preview()), hide_index=True, width="stretch", key="train_preview")

# ================================================================ 2. model and settings
st.subheader("2. Model and settings")
models = model_names(eng, user, CAUSAL_LM)
top = st.columns([2, 2, 2])
model = top[0].selectbox("Start from", models, index=models.index(DEFAULT_BASE_MODEL) if DEFAULT_BASE_MODEL in models else 0,
                         key="train_model", help=help_text("model"))
preset_name = top[1].radio("Preset", list(PRESETS), key="train_preset", horizontal=True)
name = top[2].text_input("Name of the result", key="train_name", placeholder="default: <model>-<method>-<time>",
                         help=help_text("name"))

with st.expander("Settings", icon=":material/tune:"):
    values = {}
    shown = train_usecase.form_knobs()
    slots = iter([c for _ in range(0, len(shown) + 1, 4) for c in st.columns(4)])   # four a row, the price last
    for knob in shown:
        if not knob.applies(values):   # only what the method chosen uses: beta for DPO, LoRA rank for LoRA, ...
            continue
        slot = next(slots)
        method, weights = values.get("method"), values.get("weights", "lora")   # the first knobs: a preference
        own = knob.by_method and method in PREFERENCE_METHODS                  # method's own defaults and values
        key = f"train_{knob.name}" + (f"_{method}_{weights}" if own else f"_{preset_name}" if knob.in_presets else "")
        common = dict(key=key, help=knob.help)
        default = knob.default(preset_name, method, weights)
        if knob.choices:
            values[knob.name] = slot.selectbox(knob.label, knob.choices, index=knob.choices.index(default), **common)
        elif knob.kind is bool:
            values[knob.name] = slot.toggle(knob.label, value=default, **common)
        elif knob.kind is int:
            values[knob.name] = slot.number_input(knob.label, knob.low, knob.high, default, **common)
        else:
            values[knob.name] = slot.number_input(knob.label, float(knob.low), float(knob.high), float(default),
                                                  knob.step, format="%.6f" if knob.step < 0.001 else None, **common)
    price = next(slots).number_input("Price per hour (for the cost)", 0.0, 10_000.0, train_job.price_per_hour(),
                                           0.1, key="train_price", help="what an hour of this machine costs you; 0 hides the cost")

train_documents.show_formatted(eng, dataset, model)
params = train_usecase.params_from_form(model, str(data_path), name, mapping, values)
if eng.settings.cluster:   # Ray Train places the workers on the cluster's nodes; one machine keeps torchrun
    params["workers"] = int(st.number_input("Workers (Ray Train)", 1, 1024, 1, key="train_workers",
                                            help=help_text("workers")))

# ================================================================ 3. estimate and launch
st.subheader("3. Estimate and launch")
figures = None
with error_boundary("Checking the run"):
    with st.spinner("Checking the data with the model's tokenizer..."):
        checked = train_usecase.check_run(params, eng.settings)
        figures = checked.estimate
if figures:
    plan = figures.get("plan") or {}
    timing = figures.get("time") or {}
    m = st.columns(5)
    guessed = plan.get("guessed")
    m[0].metric("Tokens", (f"~{plan['tokens']:,}" if guessed else f"{plan['tokens']:,}") if plan else "N/A",
                help="guessed from the characters (about 4 a token) until the model is converted" if guessed else None)
    m[1].metric("Blocks (train / val)", f"{plan['train_blocks']} / {plan['validation_blocks']}" if plan else "N/A")
    m[2].metric("Steps", timing.get("steps", "N/A"))
    workers = figures.get("workers", 1)
    m[3].metric("Memory", format_bytes(figures["memory_bytes"]) if figures["memory_bytes"] else "N/A",
                help=f"on {figures['device'].upper()} in {figures['precision']}; the scheduler admits the job on it"
                + (f"; {workers} workers of {format_bytes(figures['worker_memory_bytes'])} each" if workers > 1
                   else ""))
    first = timing and not timing.get("learned")   # no finished run of this kind taught the estimate yet
    m[4].metric("Time (first estimate)" if first else "Time", format_duration(figures.get("seconds")),
                help=(f"{timing['source']}; " if timing else "") + ("a first estimate: finished runs teach later "
                                                                    "ones this machine's real speed" if first else ""))
    if timing and price:
        st.caption(f"Cost: about **{timing['seconds'] / 3600 * price:.2f}** at {price:g} an hour.")
    if timing:
        st.caption(f"{timing['flops'] / 1e12:.2f} TFLOP ({figures['parameters'] / 1e6:.1f}M parameters, "
                   f"{timing['tokens']:,} tokens trained, validations included) at "
                   f"{timing['flops_per_s'] / 1e9:.0f} GFLOP/s ({timing['source']}).")
    if plan and plan.get("dropped"):
        st.warning(f"{plan['dropped']} examples have prompts longer than the block and are left out.",
                   icon=":material/warning:")
    if st.button("Start training", type="primary", icon=":material/play_arrow:", key="train_start"):
        with error_boundary("Starting the job"):
            job_id = train_usecase.submit(eng, user, checked, origin="web")
            st.session_state["train_job"] = job_id
            st.toast(f"Job {job_id} queued", icon=":material/check_circle:")

# ================================================================ 4. runs
st.subheader("4. Runs")
jobs = sched.list(kind="train")
if not jobs:
    st.caption("No training job yet.")
    st.stop()
labels = {j["id"]: f"Job {j['id']} · {j['description']} · {j['state']}" for j in jobs}
if st.session_state.get("train_job") not in labels:
    st.session_state["train_job"] = jobs[0]["id"]
job_id = st.selectbox("Run", list(labels), format_func=labels.get, key="train_job")


def curve_figure(metrics: list[dict], best_step: int | None = None) -> go.Figure:
    frame = pd.DataFrame(metrics)
    figure = go.Figure()
    if best_step is not None:
        figure.add_vline(x=best_step, line=dict(dash="dash", color="green"), annotation_text=f"kept: step {best_step}")
    for column, label in (("loss", "training loss"), ("eval_loss", "validation loss"),
                          ("reward_margin", "reward margin"), ("reward_accuracy", "reward accuracy"),
                          ("eval_reward_accuracy", "validation reward accuracy")):   # the last three: DPO, ORPO, KTO
        if column in frame:
            rows = frame.dropna(subset=[column])
            figure.add_scatter(x=rows["step"], y=rows[column], name=label,
                               mode="lines" if column == "loss" else "lines+markers")
    if "learning_rate" in frame:
        rows = frame.dropna(subset=["learning_rate"])
        figure.add_scatter(x=rows["step"], y=rows["learning_rate"], name="learning rate", yaxis="y2",
                           line=dict(dash="dot"))
    figure.update_layout(height=320, margin=dict(t=30, b=20), xaxis=dict(title="step"), yaxis=dict(title="loss"),
                         yaxis2=dict(title="learning rate", overlaying="y", side="right", showgrid=False),
                         legend=dict(orientation="h"))
    return figure


def load_figure(usage: list[dict]) -> go.Figure:
    frame = pd.DataFrame(usage)
    frame["time"] = pd.to_datetime(frame["ts"], unit="s")
    figure = go.Figure()
    figure.add_scatter(x=frame["time"], y=frame["cpu_percent"], name="CPU (% of a core)")
    figure.add_scatter(x=frame["time"], y=frame["rss_bytes"] / 1024**3, name="RAM (GB)", yaxis="y2")
    if frame["gpu_bytes"].notna().any():
        figure.add_scatter(x=frame["time"], y=frame["gpu_bytes"] / 1024**3, name="GPU memory (GB)", yaxis="y2")
    figure.update_layout(height=240, margin=dict(t=30, b=20), yaxis=dict(title="%"),
                         yaxis2=dict(title="GB", overlaying="y", side="right", showgrid=False),
                         legend=dict(orientation="h"))
    return figure


@st.fragment(run_every=2.0)
def live(job_id: int) -> None:
    job = with_eta(sched.get(job_id))
    previous = st.session_state.get("train_live_state")
    st.session_state["train_live_state"] = (job_id, job["state"])
    if previous and previous[0] == job_id and previous[1] != job["state"] and job["state"] in FINISHED:
        st.rerun()   # the result section below needs a full redraw
    metrics = sched.metrics(job_id)
    losses = [r for r in metrics if "loss" in r]
    last = losses[-1] if losses else {}
    st.progress(min(max(job["progress"], 0.0), 1.0), text=f"{job['state']} · {job['message'] or ''}")
    m = st.columns(5)
    m[0].metric("Step", last.get("step", 0))
    m[1].metric("Loss", f"{last['loss']:.4f}" if "loss" in last else "N/A")
    evals = [r for r in metrics if "eval_loss" in r]
    m[2].metric("Validation loss", f"{evals[-1]['eval_loss']:.4f}" if evals else "N/A")
    m[3].metric("Tokens/s", f"{last['tokens_per_s']:.0f}" if last.get("tokens_per_s") else "N/A")
    m[4].metric("ETA", format_duration(last.get("eta_s")) if job["state"] == "running" else "-")
    if metrics:
        st.plotly_chart(curve_figure(metrics, (job.get("result") or {}).get("best_step")), key="train_curve_chart")
    else:
        st.caption("The curve appears with the first step." if job["state"] in ("queued", "running") else "No steps.")
    if job["state"] == "queued":
        st.info(sched.waiting_reason(job_id) or "about to start", icon=":material/hourglass_top:")
    usage = sched.usage(job_id)
    if usage:
        st.plotly_chart(load_figure(usage), key="train_load_chart")
    with st.expander("Log", expanded=job["state"] == "failed"):
        st.code(sched.log_tail(job_id, 20) or "(no log yet)", language=None)


with error_boundary("Showing the run"):
    job = sched.get(job_id)
    actions = (("Stop", "train_stop", ":material/stop_circle:", job["state"] in ("queued", "running"),
                "saves a checkpoint, then stops", sched.cancel),
               ("Resume", "train_resume", ":material/resume:",
                job["state"] in RESUMABLE_STATES and bool(job["resumable"]), "continue from the last checkpoint",
                sched.resume))
    for column, (label, key, icon, enabled, tip, act) in zip(st.columns([1, 1, 6]), actions):
        if column.button(label, key=key, icon=icon, disabled=not enabled, help=tip):
            with error_boundary(label):
                act(job_id)
                st.rerun()
    if job["state"] == "failed":
        st.error(job["message"], icon=":material/error:")
    live(job_id)

    result = job.get("result") or {}
    if job["state"] == "succeeded" and result.get("after"):
        st.subheader("Result")
        before, after = result["before"], result["after"]
        st.success(f"**{result['model']}** is in the catalog: pick it in Chat or Translate.",
                   icon=":material/check_circle:")
        if result.get("best_step") is not None and result["best_step"] != result["steps"]:
            st.caption(f"Registered the best checkpoint, step **{result['best_step']}** (validation loss "
                       f"{result['best_eval_loss']:.4f}), not the last step {result['steps']}"
                       + (" (stopped early: the validation loss had stopped falling)." if result.get("stopped_early")
                          else "."))
        if describe_export(result.get("export")):
            st.caption(describe_export(result.get("export")))
        if before.get("loss") is not None:
            st.dataframe(pd.DataFrame([
                {"": "validation loss", "before": round(before["loss"], 4), "after": round(after["loss"], 4)},
                *[{"": label, "before": round(before[key], 3), "after": round(after[key], 3)}
                  for key, label in (("perplexity", "perplexity"), ("reward_accuracy", "chosen reply preferred (share)"),
                                     ("reward_margin", "reward margin")) if before.get(key) is not None
                  and after.get(key) is not None]]),
                hide_index=True, key="train_result_table")
        estimate, actual = result.get("estimate", {}), result.get("actual", {})
        st.dataframe(pd.DataFrame([
            {"": "time", "estimated": format_duration(estimate.get("seconds")), "actual": format_duration(actual.get("seconds"))},
            {"": "memory", "estimated": format_bytes(estimate.get("memory_bytes")),
             "actual": format_bytes(actual.get("memory_bytes"))},
            {"": "cost", "estimated": "N/A" if estimate.get("cost") is None else f"{estimate['cost']:.2f}",
             "actual": "N/A" if actual.get("cost") is None else f"{actual['cost']:.2f}"}]),
            hide_index=True, key="train_estimate_table")
        samples = [{"prompt": p, "before": b, "after": a}
                   for p, b, a in zip(result.get("prompts", []), before.get("samples", []), after.get("samples", []))]
        if samples:
            st.markdown("**Samples on validation prompts** (greedy, before and after)")
            st.dataframe(pd.DataFrame(samples), hide_index=True, width="stretch", key="train_samples_table")
    elif result.get("stopped"):
        st.info(f"Stopped at step {result.get('steps')}; checkpoint {result.get('checkpoint')} is kept. "
                "Resume continues from it.", icon=":material/pause_circle:")

# ================================================================ 5. evaluation (app_pages/_train_evaluation.py)
with error_boundary("Showing the evaluation"):
    finished = sched.get(job_id)
    if finished["state"] == "succeeded" and (finished.get("result") or {}).get("model"):
        train_evaluation.render(eng, user, finished)
