"""Gradio's per-session state stays the same size however many answers a session gets (gradio_state.py).

Each case launches a small Blocks whose event answers `gr.skip()` for a textbox, as the page does
for its message box, and calls it through gradio_client. The pinned Gradio alone grows the
session's config by one component per call (the first test: when it stops doing so, the
workaround can go); with `keep_component_ids` it stays put, and the textbox still updates.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gradio as gr
from gradio_client import Client

from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.app.public.housekeeping import Housekeeping
from pandagpt_demo.app.web.gradio_state import forget_ended_sessions
from pandagpt_demo.config import PublicLimits

CALLS = 12
SCRIPT = """
import json, sys
import gradio as gr
from gradio_client import Client
if sys.argv[1] == "kept":
    from pandagpt_demo.app.web.gradio_state import keep_component_ids
    keep_component_ids()

def answer(text, n):
    return (gr.skip() if n % 2 else text.upper()), n + 1

with gr.Blocks() as demo:
    box = gr.Textbox()
    count = gr.State(0)
    out = gr.Textbox()
    gr.Button().click(answer, [box, count], [out, count], api_name="answer")
    gr.Button().click(lambda t: gr.update(placeholder=t), box, box, api_name="hint")
demo.launch(prevent_thread_lock=True, quiet=True)
client = Client(demo.local_url, verbose=False)
sizes, outputs = [], []
for i in range(CALLS):
    outputs.append(client.predict(f"call {i}", api_name="/answer"))
    client.predict(f"hint {i}", api_name="/hint")
    state = demo.state_holder.session_data[client.session_hash]
    sizes.append((len(state.blocks_config.blocks), len(state.config_values)))
print(json.dumps({"sizes": sizes, "outputs": outputs}))
demo.close()
""".replace("CALLS", str(CALLS))


def run_script(mode: str) -> dict:
    """The session config's sizes (components, config entries) after each call, and the answers."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))


def test_gradio_alone_adds_a_component_to_the_session_per_update() -> None:
    sizes = run_script("plain")["sizes"]
    grew = sizes[-1][0] - sizes[0][0]
    assert grew >= CALLS, f"the pinned Gradio no longer grows a session per update ({sizes}): drop keep_component_ids"


def test_kept_ids_hold_the_session_config_constant_and_updates_still_apply() -> None:
    result = run_script("kept")
    assert len(set(map(tuple, result["sizes"]))) == 1, result["sizes"]
    answers = [f"CALL {i}" for i in range(0, CALLS, 2)]
    assert answers == [result["outputs"][i] for i in range(0, CALLS, 2)], result


def test_an_ended_session_leaves_gradio_too(tmp_path: Path) -> None:
    house = Housekeeping(PublicLimits(), tmp_path)
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(lambda text: text, box, box, api_name="echo")
    forget_ended_sessions(demo, house)
    demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        assert client.predict("hello", api_name="/echo") == "hello"
        assert client.session_hash in demo.state_holder
        house.enter(client.session_hash, ChatSession())
        house.leave(client.session_hash)
        assert client.session_hash not in demo.state_holder
        assert client.predict("again", api_name="/echo") == "again"  # a fresh state, as for a new tab
    finally:
        demo.close()
