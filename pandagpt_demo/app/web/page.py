"""The Gradio page: a chat that shows media, a message box that takes any number of files, the
"in use" strip that decides what the next answer sees, ImageBind's view beside it, the answer tables
("Answer each", "Blend two") under the chat, and the wiring of handlers.py's and binding_panel.py's handlers.

Events and their API names: `/send` (a message: {"text", "files"}), `/regenerate`, `/undo`,
`/clear` (undocumented: the page's own, callable by gradio_client, never MCP tools). `/chat`, for
programs and the MCP tool, is api/chat_tool.py's; the server adds it to these Blocks. The browser
keeps the chat's record (gr.BrowserState) so that a reload resumes it.
"""

from __future__ import annotations

import json
from functools import partial

import gradio as gr
from gradio.components.image import ImageData

from pandagpt_demo.app.answering.core import Answering
from pandagpt_demo.app.conversation.each import MAX_BLEND_STEPS
from pandagpt_demo.app.conversation.session import ChatSession
from pandagpt_demo.config import EXAMPLES_FILE
from pandagpt_demo.files import sha256_file
from pandagpt_demo.model.modalities import Modality

from .binding_html import BINDING_CSS
from .binding_panel import BindingPanel
from .gradio_state import forget_ended_sessions, keep_component_ids
from .handlers import PageHandlers
from .intake_panel import NOTHING, IntakePanel

STORAGE_KEY = "pandagpt-demo-chat"
ACCEPTED = sorted({suffix for m in Modality for suffix in m.extensions})
PAGE_CSS = (
    """
#strip .strip-row { align-items: center; gap: 6px; }
#strip .strip-row .strip-name { min-width: 0; overflow-wrap: anywhere; }
/* A phone (a shared link is often opened on one): the chat and the message box fill the first
   screen, the how-to stays in the box's placeholder, and the examples come before the side panel. */
@media (max-width: 640px) {
  #intro p { display: none; }
  #intro h1 { margin: 0; font-size: 1.4em; }
  #status { font-size: 0.8em; }
  #chatbot { height: calc(100dvh - 430px) !important; min-height: 200px; }
}
"""
    + BINDING_CSS
)


def example_messages() -> tuple[list[dict], dict[str, Modality]]:
    """examples/examples.json as messages with attachments, and each example file's kind by sha256
    (so a grey thermal picture is taken as thermal when its example is picked)."""
    if not EXAMPLES_FILE.exists():
        return [], {}
    root = EXAMPLES_FILE.parent.parent
    messages, kinds = [], {}
    for row in json.loads(EXAMPLES_FILE.read_text(encoding="utf-8")):
        files = [(Modality(m), root / row[m.value]) for m in Modality if row.get(m.value)]
        messages.append({"text": row["question"], "files": [str(path) for _, path in files]})
        kinds.update({sha256_file(path): m for m, path in files})
    return messages, kinds


def _render_strip(app: PageHandlers, rows: list[dict], session: gr.State, chatbot: gr.Chatbot, strip: gr.State, box: gr.MultimodalTextbox) -> None:
    """One row per file: name, kind (a choice where the file could be more than one), weight, ✕.

    Every component and listener has a key: the file, its place, and what the server holds for it.
    Gradio keeps a keyed component, its value and its listener's id across re-renders, so a weight
    typed while the strip renders again (one dropped file can change the message box twice) still
    reaches `set_weight`; without keys the typed value and its event were dropped. A change made by
    the server (an import, a clamped weight) changes the key, so the row shows the server's value."""
    if not rows:
        gr.Markdown("*Nothing attached yet: drop, paste, pick or record files in the message box.*", elem_id="strip-empty")
    limit = app.settings.weight_limit
    for index, row in enumerate(rows):
        where = "⚠️ missing: attach it again" if row["missing"] else "in the message box" if row["where"] == "message" else "in use"
        file = f"{index}-{row['where']}-{row['sha256']}"
        with gr.Row(elem_classes="strip-row", elem_id=f"strip-row-{index}", key=f"row-{file}"):
            gr.Markdown(
                f"**{row['name']}**  \n{where}", elem_classes="strip-name", elem_id=f"strip-name-{index}", key=f"name-{file}-{row['missing']}"
            )
            kind = gr.Dropdown(
                row["kinds"],
                value=row["kind"],
                show_label=False,
                interactive=len(row["kinds"]) > 1,
                min_width=90,
                elem_id=f"strip-kind-{index}",
                key=f"kind-{file}-{row['kind']}",
            )
            weight = gr.Number(
                row["weight"],
                minimum=-limit,
                maximum=limit,
                step=0.1,
                show_label=False,
                interactive=True,
                min_width=70,
                elem_id=f"strip-weight-{index}",
                key=f"weight-{file}-{row['weight']}",
            )
            remove = gr.Button("✕", size="sm", min_width=30, elem_id=f"strip-remove-{index}", key=f"remove-{file}")
            if row["sound"]:
                hear = gr.Button("🔊 its sound", size="sm", min_width=60, elem_id=f"strip-hear-{index}", key=f"hear-{file}")
                hear.click(partial(app.hear, index), [session], [chatbot, strip, session], api_visibility="private", key=f"hear-{file}")
        kind.input(partial(app.set_kind, index), [kind, session], [chatbot, strip, kind, session], api_visibility="private", key=f"set-kind-{file}")
        weight.input(
            partial(app.set_weight, index), [weight, session], [session], api_visibility="private", show_progress="hidden", key=f"set-weight-{file}"
        )
        remove.click(partial(app.remove, index), [box, session], [chatbot, strip, box, session], api_visibility="private", key=f"remove-{file}")


def _untouched(image: gr.Image) -> gr.Image:
    """Make `image` hand the captured file over as it is (Gradio's Image would re-encode it first;
    the app's loader decodes it exactly as the released weights expect). Set on the instance: a
    subclass of a Gradio component writes a .pyi stub beside this module when imported."""
    gradio_preprocess = image.preprocess

    def preprocess(payload: ImageData | None) -> str | None:
        if payload is not None and payload.path is not None:
            return payload.path
        return gradio_preprocess(payload)

    image.preprocess = preprocess
    return image


def _checked_by_the_handlers(slider: gr.Slider) -> gr.Slider:
    """Hand a client's value over as it is: the handlers check it (`AnswerSettings.params`), and their
    refusal names the setting, is one log line and is counted, where Gradio's own check says "Value
    99 is greater than maximum value 2.0" and prints a traceback. Set on the instance, as `_untouched`."""
    slider.preprocess = lambda payload: payload
    return slider


def build_demo(core: Answering) -> gr.Blocks:
    """The page, its answers served through `core` (its sessions and files kept in bounds by `core.house`)."""
    settings, house, handle = core.settings, core.house, core.handle
    examples, kinds = example_messages()
    app = PageHandlers(core, kinds)
    panel = BindingPanel(app)
    intake = IntakePanel(app)
    keep_component_ids()
    with gr.Blocks(title="PandaGPT") as demo:  # its CSS goes to launch(), as Gradio 6 asks
        session = gr.State(ChatSession())
        strip = gr.State([])
        stored = gr.BrowserState(None, storage_key=STORAGE_KEY)
        gr.Markdown(
            "# PandaGPT\nAttach images, sounds, videos, thermal images, depth maps or IMU recordings to a message — any mix, "
            "several of a kind — and ask. Everything attached stays in use (with its weight) until you remove it.",
            elem_id="intro",
        )
        status = gr.Markdown(app.status(), elem_id="status")
        notice = gr.Markdown(visible=False, elem_id="notice")
        with gr.Row(elem_id="main"):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="PandaGPT", height=520, editable="user", buttons=["copy", "copy_all"], elem_id="chatbot")
                with gr.Row(visible=False, elem_id="versions") as pager:
                    previous = gr.Button("‹", size="sm", min_width=40, scale=0, elem_id="version-previous")
                    version = gr.Markdown(elem_id="version-label")
                    following = gr.Button("›", size="sm", min_width=40, scale=0, elem_id="version-next")
                box = gr.MultimodalTextbox(
                    file_count="multiple",
                    file_types=ACCEPTED,
                    sources=["upload", "microphone"],
                    placeholder="Ask about your files; drop, paste or record files here, then press Enter",
                    show_label=False,
                    elem_id="message",
                )
                with gr.Accordion("Camera: a photo or a clip for the message", open=False):
                    with gr.Row():
                        photo = _untouched(gr.Image(sources=["webcam"], type="filepath", label="Photo", elem_id="camera-photo"))
                        clip = gr.Video(sources=["webcam"], label="Clip", elem_id="camera-clip")
                with gr.Row():
                    stop = gr.Button("Stop", elem_id="stop")
                    regenerate = gr.Button("Regenerate", elem_id="regenerate")
                    undo = gr.Button("Undo", elem_id="undo")
                    clear = gr.Button("Clear", elem_id="clear")
                if examples:  # here, not under both columns: on a phone they come before the side panel
                    with gr.Column(elem_id="examples"):
                        gr.Examples(examples, inputs=[box], label="Examples (made by examples/make_examples.py)")
                with gr.Accordion("Compare: the last question answered per input", open=False, elem_id="compare"):
                    gr.Markdown(
                        "Greedy answers, all decoded together; the chat itself is unchanged, and Stop ends them all. "
                        "**Answer each**: once with each file in use alone, and once with their weighted sum. "
                        "**Blend two**: from a·A + (1 − a)·B, with a from 0 (B alone) to 1 (A alone)."
                    )
                    each = gr.Button("Answer each", elem_id="answer-each")
                    each_table = gr.HTML(max_height=420, elem_id="each-table")
                    with gr.Row(equal_height=True):
                        first = gr.Dropdown([], value=None, label="A", elem_id="blend-a")
                        second = gr.Dropdown([], value=None, label="B", elem_id="blend-b")
                        steps = _checked_by_the_handlers(gr.Slider(2, MAX_BLEND_STEPS, value=5, step=1, label="Steps", elem_id="blend-steps"))
                        blend = gr.Button("Blend two", elem_id="blend")
                    blend_row = gr.HTML(max_height=420, elem_id="blend-row")
            with gr.Column(scale=2):
                gr.Markdown("### In use\nThe next answer sees the weighted sum of these files (a negative weight subtracts).")
                with gr.Column(elem_id="strip"):

                    @gr.render(inputs=[strip])
                    def show_strip(rows: list[dict]) -> None:
                        _render_strip(app, rows or [], session, chatbot, strip, box)

                with gr.Accordion("What ImageBind took in", open=True, elem_id="intake"):
                    gr.Markdown(
                        "ImageBind reads a part of each file: the centre square of a picture, ten frames of a video "
                        "(not its sound, unless you add it with 🔊), three 2 s clips of a sound, 10 s of motion. Lit: what it took in.",
                        elem_id="intake-about",
                    )
                    intake_pictures = gr.Gallery(
                        columns=2, height=300, object_fit="contain", show_label=False, allow_preview=True, elem_id="intake-pictures"
                    )
                    intake_text = gr.Markdown(NOTHING, elem_id="intake-text")

                with gr.Accordion("ImageBind's view", open=False, elem_id="imagebind-view") as lens:
                    gr.Markdown(
                        "The files in use as ImageBind, the encoder PandaGPT answers from, sees them: how alike they are, "
                        "and which of your labels each one is."
                    )
                    with gr.Row(equal_height=True):
                        labels = gr.Textbox(
                            label="Labels, separated by commas", placeholder="dog barking, rain, car engine", scale=3, elem_id="imagebind-labels"
                        )
                        look = gr.Button("Look", scale=1, elem_id="imagebind-look")
                    heat = gr.HTML(elem_id="imagebind-heatmap")
                    bars = gr.HTML(elem_id="imagebind-bars")

                with gr.Accordion("Sampling", open=True):
                    max_new_tokens = gr.Slider(1, settings.max_new_tokens_limit, value=settings.max_new_tokens, step=1, label="Maximum new tokens")
                    top_p = gr.Slider(0, 1, value=settings.top_p, step=0.01, label="Top P")
                    temperature = gr.Slider(0, settings.temperature_limit, value=settings.temperature, step=0.01, label="Temperature")
                    sliders = [_checked_by_the_handlers(slider) for slider in (max_new_tokens, top_p, temperature)]
                with gr.Accordion("Keep or resume this chat", open=False):
                    export = gr.DownloadButton("Export chat (JSON)", elem_id="export")
                    load = gr.UploadButton("Import a chat", file_types=[".json"], elem_id="import")

        view = [chatbot, strip, pager, version]
        answer_outputs = [*view, box, session]
        answering = [
            box.submit(app.send, [box, *sliders, session], answer_outputs, api_name="send", api_visibility="undocumented"),
            regenerate.click(app.regenerate, [*sliders, session], answer_outputs, api_name="regenerate", api_visibility="undocumented"),
            chatbot.retry(app.regenerate, [*sliders, session], answer_outputs, api_visibility="private"),
            chatbot.edit(app.edit, [*sliders, session], answer_outputs, api_visibility="private"),
        ]
        comparing = [  # named: a private event still takes its function's name, and /answer_each is the program's endpoint
            each.click(panel.answer_each, [max_new_tokens, session], [each_table], api_name="page_answer_each", api_visibility="private"),
            blend.click(panel.blend, [first, second, steps, max_new_tokens, session], [blend_row], api_name="page_blend", api_visibility="private"),
        ]
        stop.click(None, cancels=[*answering, *comparing])
        box.stop(None, cancels=answering)
        undo_events = [
            undo.click(app.undo, [session], answer_outputs, api_name="undo", api_visibility="undocumented"),
            chatbot.undo(app.undo, [session], answer_outputs, api_visibility="private"),
            clear.click(app.clear, [session], answer_outputs, api_name="clear", api_visibility="undocumented"),
            chatbot.clear(app.clear, [session], answer_outputs, api_visibility="private"),
            previous.click(partial(app.page, -1), [session], [*view, session], api_visibility="private"),
            following.click(partial(app.page, 1), [session], [*view, session], api_visibility="private"),
        ]
        for looking in (lens.expand, look.click, labels.submit):
            looking(panel.look, [labels, session], [heat, bars], api_visibility="private")
        strip.change(panel.pair_choices, [session, first, second], [first, second], api_visibility="private", show_progress="hidden")
        strip.change(intake.show, [session], [intake_pictures, intake_text], api_visibility="private", show_progress="minimal")
        for camera in (photo, clip):
            camera.change(app.add_capture, [camera, box], [box, camera], api_visibility="private")
        box.change(app.sync_box, [box, session], [strip, session], api_visibility="private", show_progress="hidden", trigger_mode="always_last")
        remembered = {
            "fn": app.remember,
            "inputs": [*sliders, session],
            "outputs": [stored, export],
            "api_visibility": "private",
            "show_progress": "hidden",
        }
        for event in [*answering, *undo_events]:
            event.then(**remembered)
        load.upload(app.import_chat, [load, session], [*view, *sliders, session], api_visibility="private").then(**remembered)

        demo.load(app.open_page, [stored, session], [notice, *view, session], api_visibility="private").then(**remembered)
        demo.unload(app.close_page)
        house.keep_files_of(demo.blocks.values())

        timer = gr.Timer(1.0)
        timer.tick(lambda: (app.status(), gr.Timer(active=handle.changing)), None, [status, timer], api_visibility="private")
    forget_ended_sessions(demo, house)
    return demo
