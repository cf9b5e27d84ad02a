"""The login page: one small HTML form, served by the gate before anything of Streamlit is.

No script, no outside resource: a visitor who has not logged in is sent this page and nothing else.
"""
from __future__ import annotations

from html import escape

STYLE = """
body { background: #0e1117; color: #fafafa; font-family: "Source Sans Pro", system-ui, sans-serif; margin: 0; }
main { max-width: 22rem; margin: 12vh auto; padding: 2rem; border: 1px solid #31333f; border-radius: .75rem; }
h1 { font-size: 1.6rem; margin: 0 0 1.25rem; }
label { display: block; margin: .9rem 0 .3rem; font-size: .9rem; }
input { width: 100%; box-sizing: border-box; padding: .55rem; border-radius: .45rem; border: 1px solid #4a4c57;
        background: #262730; color: #fafafa; font-size: 1rem; }
button { margin-top: 1.4rem; width: 100%; padding: .6rem; border: 0; border-radius: .45rem; background: #7C5CFF;
         color: white; font-size: 1rem; cursor: pointer; }
p.message { background: #3e2327; color: #ffb3b8; padding: .6rem .8rem; border-radius: .45rem; }
p.hint { color: #a3a8b8; font-size: .85rem; margin-top: 1.2rem; }
"""


def login_page(action: str, next_path: str = "/", message: str = "", name: str = "") -> bytes:
    """The page, posting to `action`; `message` says why the last try failed."""
    note = f'<p class="message" role="alert">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin"><title>LLM OS · Log in</title><style>{STYLE}</style></head>
<body><main>
<h1>LLM OS</h1>
{note}
<form method="post" action="{escape(action)}">
<input type="hidden" name="next" value="{escape(next_path)}">
<label for="name">Name</label>
<input id="name" name="name" autocomplete="username" required maxlength="64" value="{escape(name)}" autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<button type="submit">Log in</button>
</form>
<p class="hint">An admin makes accounts on the Admin page or with <code>python -m llmos_core users add NAME</code>.
With <code>LLMOS_WEB_PASSWORD</code> set, the name <code>admin</code> logs in with it.</p>
</main></body></html>""".encode()


def refusal_page(message: str) -> bytes:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LLM OS</title><style>{STYLE}</style>'
            f'</head><body><main><h1>LLM OS</h1><p class="message">{escape(message)}</p></main></body></html>').encode()
