"""Chat: streaming replies from any causal LM in the catalog, full sampling control, saved conversations.

The engine's generation service makes the replies (shared by every session, batched per model);
conversations live in SQLite, so they survive a refresh and a restart. Compare mode (_compare_view.py) sends
one prompt to two or three models and streams their answers side by side. A Stop press, or leaving the
page, interrupts this script run; the stream's `finally` then cancels the generation, and ours saves
what was written.
"""
from __future__ import annotations

import streamlit as st

from llmos_core.conversations import Conflict, group_by_day
from llmos_core.errors import LLMOSError
from llmos_core.generation import PLAIN_NOTE, SamplingParams
from llmos_core.models.catalog import CAUSAL_LM
from llmos_core.present import reply_figures
from llmos_core.usecases import ask
from llmos_core.usecases import chat as chat_turns
from llmos_core.usecases import feedback as chat_feedback
from llmos_core.usecases.evaluate import default_model
from llmos_core.usecases.models import model_names
from llmos_core.usecases import structured
from app_pages import _compare_view as compare_view
from app_pages import _feedback_buttons as feedback_buttons
from app_pages._citations import draw_citations, draw_grounding
from app_pages._shared import acting_user, engine, error_boundary

eng = engine()
user = acting_user()
GROUP_AFTER = 12   # conversations in the sidebar before they are grouped by day
state = st.session_state
SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty")   # the widgets a model's defaults set
NO_DOCUMENTS = "None"


# ---------------------------------------------------------------- settings <-> widgets


def apply_model_defaults() -> None:
    """A newly picked model brings its recommended sampling (ModelSpec.sampling)."""
    spec = eng.catalog.get(state["chat_model"])
    params = SamplingParams.for_model(spec.sampling)
    state["chat_mode"] = "Sampling" if params.do_sample else "Greedy"
    for key in SAMPLING_KEYS:
        state[f"chat_{key}"] = getattr(params, key)


def apply_settings(model: str, settings: dict) -> None:
    """Put a saved conversation's model and settings back into the widgets."""
    if model in models:
        state["chat_model"] = model
        apply_model_defaults()
    if "do_sample" in settings:
        state["chat_mode"] = "Sampling" if settings["do_sample"] else "Greedy"
    for key in SAMPLING_KEYS:
        if key in settings:
            state[f"chat_{key}"] = settings[key]
    for key in ("max_new_tokens", "seed", "system"):
        if key in settings:
            state[f"chat_{key}"] = settings[key]
    if "stop" in settings:
        state["chat_stop"] = "\n".join(settings["stop"])
    state["chat_collection"] = settings.get("collection") or NO_DOCUMENTS


def current_params(json_reply: bool = True) -> SamplingParams:
    stop = [s.replace("\\n", "\n") for s in state["chat_stop"].splitlines() if s]
    params = plain_params(stop)
    return structured.constrain(params, state["chat_schema"]) if json_reply and state["chat_json"] else params


def current_system() -> str:
    return structured.system_prompt(state["chat_system"], state["chat_schema"]) if state["chat_json"] else state["chat_system"]


def load_example() -> None:
    state["chat_schema"] = structured.example(state["chat_schema_example"])


def plain_params(stop: list[str]) -> SamplingParams:
    return SamplingParams(do_sample=state["chat_mode"] == "Sampling", temperature=state["chat_temperature"],
                          top_p=state["chat_top_p"], top_k=state["chat_top_k"],
                          repetition_penalty=state["chat_repetition_penalty"],
                          max_new_tokens=state["chat_max_new_tokens"], seed=state["chat_seed"], stop=stop)


def open_conversation(conversation_id: int | None) -> None:
    state["chat_view"] = "Chat"
    state["chat_conversation"] = conversation_id
    state["chat_seen_last"] = None
    if conversation_id is not None:
        conversation = eng.conversations.get(user, conversation_id)
        apply_settings(conversation["model"], conversation["settings"])
        state["chat_title"] = conversation["title"]


# ---------------------------------------------------------------- state

models = model_names(eng, user, CAUSAL_LM)
state.setdefault("chat_conversation", None)
state.setdefault("chat_view", "Chat")
for key in ("chat_model", "chat_compare_models"):   # one of them is not drawn in each view: keep its value
    if key in state:
        state[key] = state[key]
state.setdefault("chat_seen_last", None)
state.setdefault("chat_notice", None)
if "chat_model" not in state or state["chat_model"] not in models:
    promoted = default_model(eng, user, CAUSAL_LM, models)   # "Promote" on the Train page, else the embedded one
    state["chat_model"] = promoted if promoted in models else models[0]
    apply_model_defaults()
state.setdefault("chat_system", "You are a helpful assistant.")
state.setdefault("chat_max_new_tokens", SamplingParams().max_new_tokens)
state.setdefault("chat_seed", None)
state.setdefault("chat_stop", "")
state.setdefault("chat_json", False)
state.setdefault("chat_schema_example", structured.ANY_OBJECT)
state.setdefault("chat_schema", structured.example(structured.ANY_OBJECT))
collections = [c["name"] for c in ask.list_collections(eng, user) if c["owner"] == user.id]
if state.get("chat_collection") not in collections:
    state["chat_collection"] = NO_DOCUMENTS

conversation = None
if state["chat_conversation"] is not None:
    # A Stop press starts this run while the stopped one is still saving its partial reply: wait for it.
    eng.conversations.wait_until_idle(state["chat_conversation"], timeout=5.0)
    try:
        conversation = eng.conversations.get(user, state["chat_conversation"])
    except LLMOSError:
        state["chat_notice"] = "That conversation was deleted (perhaps in another tab)."
        state["chat_conversation"] = None

# ---------------------------------------------------------------- sidebar: conversations

with st.sidebar:
    st.subheader("Conversations")
    if st.button("New chat", key="chat_new", icon=":material/add:", width="stretch"):
        open_conversation(None)
        st.rerun()
    search = st.text_input("Search", key="chat_search", placeholder="Search conversations",
                           label_visibility="collapsed")
    rows = eng.conversations.list(user, search=search, mine=True)   # only this user's, newest first
    if search and not rows:
        st.caption("No conversation matches.")
    groups = group_by_day(rows) if len(rows) > GROUP_AFTER else [("", rows)]
    for label, group in groups:
        if label:
            st.caption(label)
        for row in group:
            current = conversation is not None and row["id"] == conversation["id"]
            if st.button(row["title"], key=f"chat_open_{row['id']}", width="stretch",
                         type="primary" if current else "secondary", help=f"{row['model']} · {row['messages']} messages"):
                open_conversation(row["id"])
                st.rerun()
    if conversation is not None:
        with st.expander("This conversation", icon=":material/settings:"):
            title = st.text_input("Title", key="chat_title")
            if st.button("Rename", key="chat_rename", icon=":material/edit:"):
                with error_boundary("Renaming"):
                    eng.conversations.rename(user, conversation["id"], title)
                    st.rerun()
            st.download_button("Export Markdown", eng.conversations.export_markdown(user, conversation["id"]),
                               file_name=f"conversation-{conversation['id']}.md", mime="text/markdown",
                               key="chat_export_md", icon=":material/download:")
            st.download_button("Export JSON", eng.conversations.export_json(user, conversation["id"]),
                               file_name=f"conversation-{conversation['id']}.json", mime="application/json",
                               key="chat_export_json", icon=":material/data_object:")
            if st.button("Delete", key="chat_delete", icon=":material/delete:", type="primary"):
                with error_boundary("Deleting"):
                    eng.conversations.delete(user, conversation["id"])
                    open_conversation(None)
                    st.rerun()
    compare_view.list_in_sidebar(eng, user)

# ---------------------------------------------------------------- main: settings

st.title(":material/chat: Chat")
st.radio("View", ["Chat", compare_view.COMPARE], key="chat_view", horizontal=True, label_visibility="collapsed")
comparing = state["chat_view"] == compare_view.COMPARE
model_col, system_col, documents_col = st.columns([1, 1.5, 1])
if comparing:
    compare_view.pick_models(model_col, models)
else:
    model_col.selectbox("Model", models, key="chat_model", on_change=apply_model_defaults,
                        help="Any causal language model in the catalog; it loads on first use.")
system_col.text_input("System prompt", key="chat_system")
if not comparing:   # a comparison puts the same bare prompt to each model
    documents_col.selectbox("Attach documents", [NO_DOCUMENTS] + collections, key="chat_collection",
                            help="A collection from the Ask page: each message is answered from its passages, "
                                 "with citations (the system prompt then gives way to the one that asks for them).")
spec = eng.catalog.get(state["chat_model"])
with st.expander("Sampling", icon=":material/tune:"):
    cols = st.columns(4)
    cols[0].radio("Decoding", ["Sampling", "Greedy"], key="chat_mode", horizontal=True,
                  help="Greedy always takes the likeliest token; small models then tend to repeat themselves.")
    sampling = state["chat_mode"] == "Sampling"
    cols[1].slider("Temperature", 0.05, 2.0, key="chat_temperature", step=0.05, disabled=not sampling)
    cols[2].slider("Top-p", 0.05, 1.0, key="chat_top_p", step=0.05, disabled=not sampling)
    cols[3].number_input("Top-k (0: off)", 0, 1000, key="chat_top_k", disabled=not sampling)
    cols = st.columns(4)
    cols[0].slider("Repetition penalty", 1.0, 2.0, key="chat_repetition_penalty", step=0.05)
    cols[1].number_input("Max new tokens", 1, 4096, key="chat_max_new_tokens")
    cols[2].number_input("Seed (empty: random)", 0, 2**31 - 1, key="chat_seed")
    cols[3].text_area("Stop sequences, one a line", key="chat_stop", height=68)
    if comparing:
        st.caption("Every model in the comparison answers with these settings.")
    elif spec.sampling:
        st.caption("Defaults: " + ", ".join(f"{k} {v}" for k, v in spec.sampling.items() if k != "do_sample")
                   + f" (recommended for {spec.name}).")
if not comparing:
    with st.expander("Reply as JSON", icon=":material/data_object:", expanded=state["chat_json"]):
        st.toggle("Reply as JSON", key="chat_json", help="The model can only write JSON valid against the schema: "
                  "each token is masked by a grammar compiled from it (valid by construction, not by asking).")
        st.selectbox("Example schemas", list(structured.EXAMPLES), key="chat_schema_example", on_change=load_example)
        st.text_area("JSON schema", key="chat_schema", height=160)
if comparing:
    compare_view.render(eng, current_params(json_reply=False), state["chat_system"])
    st.stop()
with error_boundary("Choosing a backend"):
    st.caption(f":material/memory: {eng.chat.choose_backend(spec.name).reason}")   # what auto picks now, and why
if not spec.chat:
    st.info(PLAIN_NOTE.format(name=spec.name), icon=":material/info:")

if state["chat_notice"]:
    st.warning(state["chat_notice"], icon=":material/sync_problem:")
    state["chat_notice"] = None

# ---------------------------------------------------------------- the conversation so far

history = conversation["messages"] if conversation else []
rated = chat_feedback.conversation_feedback(eng, user, conversation["id"]) if conversation else {}
for message in history:
    with st.chat_message(message["role"]):
        as_json = structured.formatted(message["content"]) if message["role"] == "assistant" else None
        if as_json is not None:
            st.code(as_json, language="json")
        else:
            st.markdown(message["content"])
        if message["role"] == "assistant" and message["stats"].get("finish_reason") == "not_found":
            st.caption(f":material/search_off: Nothing in {message['stats'].get('collection')} matched; "
                       "no model was asked.")
        elif message["role"] == "assistant" and message["stats"]:
            st.caption(reply_figures(message["stats"]))
            if "citations" in message["stats"]:
                draw_grounding(message["stats"].get("grounding"))
                draw_citations(message["stats"]["citations"])
            dropped = message["stats"].get("dropped_messages")
            if dropped:
                st.caption(f":material/content_cut: The conversation outgrew the context: the {dropped} oldest "
                           "messages were left out of this reply (the system prompt was kept).")
            feedback_buttons.draw_reply_feedback(eng, user, conversation["id"], message, rated.get(message["id"]))
if not history:
    st.caption("Ask anything. Replies stream as they are written; Stop keeps what was written so far.")


def run_turn(kind: str, prompt: str = "") -> None:
    """kind: send (a new user message), regenerate (the last reply), continue (the last reply)."""
    name = state["chat_model"]
    turn = chat_turns.start_turn(eng, user, state["chat_conversation"], kind, model=name, params=current_params(),
                                 system=current_system(), prompt=prompt, seen_last=state["chat_seen_last"],
                                 collection=None if state["chat_collection"] == NO_DOCUMENTS else state["chat_collection"])
    state["chat_conversation"] = turn.conversation_id
    if kind == chat_turns.SEND:
        with st.chat_message("user"):
            st.markdown(prompt)
    if turn.needs_loading:
        with st.spinner(f"Loading {name} ({turn.backend}; it was not in memory)..."):
            turn.load_model()
    with turn.replying() as reply, st.chat_message("assistant"):
        if turn.continue_from is not None:
            st.markdown(turn.continue_from["content"])
        status = st.empty()
        st.button("Stop", key="chat_stop_button", icon=":material/stop_circle:")   # a click interrupts this run

        def text():
            for event in reply.events():
                if event.queued is not None:
                    status.caption(f":material/hourglass_top: Waiting for {name}: {event.queued} ahead of you")
                elif event.text:
                    status.empty()
                    yield event.text

        st.write_stream(text())


prompt = st.chat_input("Message " + state["chat_model"], key="chat_input")
action = None
if history:
    last_role = history[-1]["role"]
    cols = st.columns([1.5, 1.3, 5])   # wide enough for "Regenerate"
    if cols[0].button("Regenerate" if last_role == "assistant" else "Answer", key="chat_regenerate",
                      icon=":material/refresh:"):
        action = "regenerate"
    if last_role == "assistant" and cols[1].button("Continue", key="chat_continue", icon=":material/fast_forward:"):
        action = "continue"

if prompt is not None or action:
    finished = False
    with error_boundary("Chatting"):
        try:
            run_turn("send" if prompt is not None else action, prompt or "")
            finished = True
        except Conflict as exc:
            state["chat_notice"] = (f"{exc.message}: it was reloaded, and your message was not sent"
                                    + (f": “{prompt}”" if prompt else "") + ". Send it again if you still want to.")
            finished = True
    cid = state["chat_conversation"]
    state["chat_seen_last"] = eng.conversations.last_message_id(cid) if cid is not None else None
    if finished:
        st.rerun()
else:
    state["chat_seen_last"] = history[-1]["id"] if history else None
