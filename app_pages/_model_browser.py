"""The Models page's browser: search the hub with a prediction per form (memory, tokens/s, time to first
token, download) and a badge; and, on a loaded model's card, the prediction beside the measurement."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from llmos_core.present import format_bytes
from llmos_core.usecases.models import model_tiers, prediction_beside_measurement, recalibrate, search_models
from app_pages._shared import error_boundary

BADGE_ICONS = {"runs well": ":material/check_circle:", "runs slowly": ":material/hourglass_bottom:",
               "too big": ":material/block:"}


def prediction_rows(predictions: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "form": f"{p['runner']} {p['quant']}", "memory": format_bytes(p["memory_bytes"]),
        "decode tok/s": round(p["decode_tokens_per_s"], 1), "prompt tok/s": round(p["prompt_tokens_per_s"]),
        "TTFT 1k tokens (s)": round(p["ttft_s"], 1),
        "download": "on disk" if not p["download_bytes"] else format_bytes(p["download_bytes"])
        + (f" · {p['download_s']:.0f} s" if p["download_s"] is not None else ""),
        "badge": p["badge"]} for p in predictions])


def measured_caption(eng, name: str, backend: str) -> str | None:
    """'predicted … · measured …' for a loaded model's card, or None before its first measurement."""
    rows = prediction_beside_measurement(eng, name) or {}
    row = rows.get(backend)   # transformers-int8 is not a form the browser predicts
    if row is None:
        return None
    p, m = row["predicted"], row["measured"]
    text = f"predicted {format_bytes(p['memory_bytes'])}, {p['decode_tokens_per_s']:.1f} tok/s"
    measured = [format_bytes(m["memory_bytes"])] if m.get("memory_bytes") else []
    if m.get("decode_tokens_per_s"):
        measured.append(f"{m['decode_tokens_per_s']:.1f} tok/s")
    return f"{text} · measured {', '.join(measured)}" if measured else text


CLASS_NAMES = {"cpu": "CPU only", "mid-gpu": "one mid-size GPU", "big-gpu": "one big GPU"}


def tiers_section(eng) -> None:
    """Well-known models that run well on this machine's class: a next model after the embedded ones."""
    st.subheader("Next models to try")
    with error_boundary("Predicting the tiers"):
        tier = model_tiers(eng)
        st.caption(f"For this machine ({CLASS_NAMES[tier.machine_class]}): well-known models and the form to take, "
                   "predicted here before any download. Estimate one below for all its forms.")
        if tier.none_well:
            st.info("None of them runs well on this machine right now; these are the smallest that fit.",
                    icon=":material/hourglass_bottom:")
        rows = tier.to_dict()["models"]
        if rows:
            table = prediction_rows(rows).drop(columns=["download"])
            table.insert(0, "model", [p["model"] for p in rows])
            st.dataframe(table, hide_index=True, width="stretch")
        else:
            st.info("None of the curated models fits in the memory budget.", icon=":material/block:")


def search_section(eng, user) -> None:
    st.subheader("Find a model")
    st.caption("Before any download: what each form would take here and how fast it would answer, from the "
               "hub's metadata and this machine's measured speed.")
    query_col, task_col, button_col = st.columns([3, 2, 1], vertical_alignment="bottom")
    query = query_col.text_input("Search the Hugging Face hub", key="models_search_query", placeholder="qwen 0.5b")
    task = task_col.selectbox("Task", ["text-generation", "translation", "sentence-similarity", "any"],
                              key="models_search_task")
    context = st.select_slider("Context to plan for (tokens)", [1024, 2048, 4096, 8192, 16384, 32768], value=4096,
                               key="models_search_context")
    if button_col.button("Search", key="models_search", icon=":material/search:", disabled=not query.strip()):
        with error_boundary("Searching"), st.spinner("Asking the hub..."):
            found = search_models(eng, user, query, task="" if task == "any" else task, context=context)
            st.session_state["models_search_result"] = found
    found = st.session_state.get("models_search_result")
    if found is not None:
        if found.offline:
            st.info(found.offline, icon=":material/cloud_off:")
            st.dataframe(pd.DataFrame(found.local), hide_index=True, width="stretch")
        elif not found.models:
            st.info("No model matches that search.", icon=":material/info:")
        for model in found.models:
            with st.container(border=True):
                best = model["recommended"]
                badge = best["badge"] if best else ("too big" if model["predictions"] else "")
                st.markdown(f"**{model['repo_id']}** · {model['parameters'] / 1e6:,.0f}M parameters · "
                            f"{model['architecture']} · licence {model['license'] or 'not stated'}"
                            + (" · :orange[gated]" if model["gated"] else "")
                            + f" · {model['downloads']:,} downloads · {model['likes']} likes")
                support = [f"{runner}: {'yes' if not why else why}" for runner, why in model["runners"].items()]
                st.caption("Runs on " + " · ".join(support))
                if model["predictions"]:
                    st.dataframe(prediction_rows(model["predictions"]), hide_index=True, width="stretch")
                if best:
                    st.markdown(f"{BADGE_ICONS[badge]} **{badge}** · recommended: {best['runner']} {best['quant']}")
                elif model["predictions"]:
                    st.markdown(f"{BADGE_ICONS['too big']} **too big** for the memory budget at this context")
    with st.popover("Calibration", icon=":material/speed:"):
        st.caption("Memory bandwidth, matmul speed and a short llama.cpp run on the embedded SmolLM2 (its cost "
                   "per layer beyond the bytes, its prompt speed) are measured once and stored; each chat reply "
                   "measured since corrects the predictions per runner and quantization.")
        if st.button("Measure this machine again", key="models_recalibrate"):
            with error_boundary("Measuring"):
                figures = recalibrate(eng)
                layer = figures["llamacpp_layer_s"]
                st.success(f"{figures['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, "
                           f"{figures['flops_per_s'] / 1e9:.0f} GFLOP/s, "
                           + (f"llama.cpp {layer * 1e3:.2f} ms a layer, " if layer is not None else "")
                           + f"{figures['learned_from_replies']} replies learned from")
