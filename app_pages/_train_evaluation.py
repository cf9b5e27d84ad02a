"""The Train page's evaluation of a finished run: is the result better than the model it started from, on
prompts held out of the run's data (or a held-out file)? Then Promote (the user's default model for its
task) or Keep (it stays in the catalog). The work is in llmos_core.usecases.evaluate."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from llmos_core.evaluation import METRICS
from llmos_core.usecases import datasets
from llmos_core.usecases import evaluate as evaluation
from llmos_core.usecases.models import model_names
from llmos_core.models.catalog import CAUSAL_LM
from app_pages._shared import error_boundary

VERDICTS = {"better": (st.success, ":material/trending_up:", "better than"),
            "same": (st.info, ":material/trending_flat:", "no different from"),
            "worse": (st.warning, ":material/trending_down:", "worse than")}
METRIC_HELP = ("exact: exact match with the reference; f1: shared words with it; chrf: characters (translation); "
               "rule: how often your rule holds; perplexity: how surprised the model is by the reference (lower "
               "is better); judge: a third model picks the better reply. The first metric decides the verdict.")


def render(eng, user, job: dict) -> None:
    tuned, base = job["result"]["model"], job["params"]["model"]
    st.subheader("Evaluation: is it better at your task?")
    st.caption(f"**{tuned}** and **{base}** answer the same held-out prompts (greedy); each metric's mean comes "
               "with a 95 % bootstrap interval, and the verdict is **better** only when the whole interval of the "
               "difference is above zero (**worse** when it is wholly below, **same** otherwise).")
    key = f"train_eval_{job['id']}"
    with st.form(f"{key}_form", border=True):
        cols = st.columns([2, 2, 2])
        metrics = cols[0].multiselect("Metrics", METRICS, default=["f1"], key=f"{key}_metrics", help=METRIC_HELP)
        regex = cols[1].text_input("Rule: a regular expression the reply matches", key=f"{key}_regex")
        phrase = cols[1].text_input("or a phrase it contains", key=f"{key}_phrase")
        judge = cols[2].selectbox("Judge model (for judge)", ["None"] + model_names(eng, user, CAUSAL_LM),
                                  key=f"{key}_judge")
        tokens = cols[2].number_input("Max new tokens", 8, 1024, 128, key=f"{key}_tokens")
        heldout = st.file_uploader("Held-out prompts (optional JSONL: prompt, reference); without one, the prompts "
                                   "held out of this run's data are used", type=["jsonl"], key=f"{key}_heldout",
                                   max_upload_size=evaluation.MAX_UPLOAD_MB)
        go = st.form_submit_button("Evaluate", icon=":material/rule:")
    if go:
        with error_boundary("Evaluating"):
            rule = evaluation.make_rule(regex.strip() or None, phrase.strip() or None)
            path = datasets.upload_dataset(eng.settings, user, heldout.name, heldout.getvalue()).path if heldout else None
            bar = st.progress(0.0, text="starting")
            evaluation.evaluate_run(eng, user, job["id"], heldout=path, metrics=metrics, rule=rule,
                                    judge=None if judge == "None" else judge, max_new_tokens=int(tokens),
                                    progress=lambda message, fraction: bar.progress(fraction, text=message))
            bar.empty()
    report = evaluation.saved_evaluation(eng, user, job["id"])
    if report is not None:
        show_report(report)
        cols = st.columns([1.2, 1, 5])
        if cols[0].button("Promote", key=f"{key}_promote", icon=":material/star:", type="primary",
                          help=f"Make {tuned} your default model: Chat opens with it."):
            with error_boundary("Promoting"):
                evaluation.promote(eng, user, tuned)
                st.success(f"**{tuned}** is now your default model.", icon=":material/star:")
        if cols[1].button("Keep", key=f"{key}_keep", icon=":material/inventory_2:",
                          help="Leave it in the catalog without making it the default."):
            st.info(f"**{tuned}** stays in the catalog; your default model is unchanged.", icon=":material/inventory_2:")


def show_report(report: dict) -> None:
    draw, icon, words = VERDICTS[report["verdict"]]
    primary = report["metrics"][report["primary"]]
    draw(f"On {report['rows']} held-out prompts, **{report['tuned']}** is **{report['verdict']}** "
         f"({words} {report['base']}) by {report['primary']}: {primary['tuned']['mean']:.3g} against "
         f"{primary['base']['mean']:.3g}, difference {primary['difference']['mean']:+.3g} "
         f"(95 % interval {primary['difference']['low']:+.3g} to {primary['difference']['high']:+.3g}).", icon=icon)
    if report.get("rule"):
        st.caption(f"Rule: the reply {report['rule']}.")
    st.dataframe(pd.DataFrame([
        {"metric": name + (" (lower is better)" if m["lower_is_better"] else ""),
         "tuned": _interval(m["tuned"]), "base": _interval(m["base"]), "difference": _interval(m["difference"], True),
         "verdict": m["verdict"]} for name, m in report["metrics"].items()]), hide_index=True, width="stretch",
        key="train_eval_table")
    if report.get("samples"):
        with st.expander("Replies to the first held-out prompts"):
            st.dataframe(pd.DataFrame(report["samples"]), hide_index=True, width="stretch", key="train_eval_samples")


def _interval(values: dict, signed: bool = False) -> str:
    f = "{:+.3g}" if signed else "{:.3g}"
    return f"{f.format(values['mean'])} [{f.format(values['low'])}, {f.format(values['high'])}]"
