"""The Chat page's compare mode: one prompt to two or three models, their answers streaming side by side in
columns with their figures, saved like conversations (listed in the sidebar, reopened with a click)."""
from __future__ import annotations

import streamlit as st

from llmos_core.errors import LLMOSError
from llmos_core.generation import SamplingParams
from llmos_core.present import reply_figures
from llmos_core.usecases import compare
from app_pages._feedback_buttons import draw_compare_choice
from app_pages._shared import acting_user, error_boundary

COMPARE = "Compare side by side"
state = st.session_state


def list_in_sidebar(eng, user) -> None:
    """The saved comparisons, newest first; a click opens one in compare mode."""
    rows = [r for r in eng.comparisons.list(user) if r["owner"] == user.id]   # only this user's
    if not rows:
        return
    st.subheader("Comparisons")
    for row in rows:
        current = state.get("chat_view") == COMPARE and state.get("chat_comparison") == row["id"]
        if st.button(row["title"], key=f"chat_compare_open_{row['id']}", width="stretch",
                     type="primary" if current else "secondary", help=" · ".join(row["models"])):
            state["chat_view"], state["chat_comparison"] = COMPARE, row["id"]
            st.rerun()


def pick_models(column, models: list[str]) -> None:
    state.setdefault("chat_compare_models", [])
    state["chat_compare_models"] = [m for m in state["chat_compare_models"] if m in models]
    column.multiselect("Models", models, key="chat_compare_models", max_selections=compare.MAX_MODELS,
                       help="Two or three models (for example a base model and its fine-tune): each gets the "
                            "same prompt and the same sampling settings, and all answer at once.")


def draw_answer(text_slot, figures_slot, record: dict, *, writing: bool = False, queued: int | None = None) -> None:
    """One column, while it is written and after: record is {model, text, stats, error} (as saved)."""
    if record["error"]:
        text_slot.error(record["error"], icon=":material/error:")
    else:
        text_slot.markdown(record["text"] or " ")
    if queued is not None:
        figures_slot.caption(f":material/hourglass_top: Waiting for {record['model']}: {queued} ahead")
    elif writing:
        figures_slot.caption(f":material/edit: {record['stats'].get('tokens', 0)} tokens so far")
    elif record["stats"]:
        figures_slot.caption(reply_figures(record["stats"]))


def columns_for(models: list[str]) -> list:
    """A bordered column per model with its name on top; -> (text slot, figures slot) of each."""
    slots = []
    for column, model in zip(st.columns(len(models)), models):
        box = column.container(border=True)
        box.markdown(f"**{model}**")
        slots.append((box.empty(), box.empty()))
    return slots


def show_saved(eng) -> None:
    writing = state.pop("chat_compare_writing", None)
    if writing is not None:
        writing.saved.wait(timeout=5.0)   # a Stop press reruns while the stopped answers are still being saved
    try:
        saved = eng.comparisons.get(acting_user(), state["chat_comparison"])
    except LLMOSError:
        state["chat_comparison"] = None
        st.warning("That comparison was deleted (perhaps in another tab).", icon=":material/sync_problem:")
        return
    with st.chat_message("user"):
        st.markdown(saved["prompt"])
    slots = columns_for([a["model"] for a in saved["answers"]])
    for (text_slot, figures_slot), record in zip(slots, saved["answers"]):
        draw_answer(text_slot, figures_slot, record)
    draw_compare_choice(eng, acting_user(), saved["id"], saved["answers"], st.columns(len(saved["answers"])))
    cols = st.columns([1.5, 1.5, 5])
    cols[0].download_button("Export JSON", eng.comparisons.export_json(acting_user(), saved["id"]), key="chat_compare_export",
                            file_name=f"comparison-{saved['id']}.json", mime="application/json",
                            icon=":material/data_object:")
    if cols[1].button("Delete", key="chat_compare_delete", icon=":material/delete:"):
        with error_boundary("Deleting"):
            eng.comparisons.delete(acting_user(), saved["id"])
            state["chat_comparison"] = None
            st.rerun()


def run_comparison(eng, prompt: str, params: SamplingParams, system: str) -> None:
    comparison = compare.start_comparison(eng, acting_user(), state["chat_compare_models"], prompt, params=params, system=system)
    with st.chat_message("user"):
        st.markdown(prompt)
    for answer in compare.models_to_load(eng, comparison):
        with st.spinner(f"Loading {answer.model} ({answer.backend}; it was not in memory)..."):
            compare.load_model(eng, answer)
    st.button("Stop", key="chat_compare_stop", icon=":material/stop_circle:")   # a click interrupts this run
    slots = columns_for([a.model for a in comparison.answers])
    with comparison.running() as updates:
        state["chat_comparison"], state["chat_compare_writing"] = comparison.saved_id, comparison
        for answer in updates:
            draw_answer(*slots[answer.index], answer.record(), writing=not (answer.last.done or answer.ended),
                        queued=answer.queued)


def render(eng, params: SamplingParams, system: str) -> None:
    """Compare mode, below the shared settings: the open comparison, then the prompt box."""
    state.setdefault("chat_comparison", None)
    if state["chat_comparison"] is not None:
        show_saved(eng)
    else:
        st.caption("One prompt goes to every model picked above; the answers stream side by side with their "
                   "figures (tokens, time to first token, tokens/s, backend) and are saved to reopen.")
    prompt = st.chat_input("One prompt for every model", key="chat_compare_input")
    if prompt is not None:
        with error_boundary("Comparing"):
            run_comparison(eng, prompt, params, system)
            st.rerun()
