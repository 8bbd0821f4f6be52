"""The "in use" strip as the browser drives it: Gradio's queue protocol, spoken as the page speaks it.

The strip is a `gr.render`: each render sends the browser new components and new listeners. An
edit the browser sends to a listener of the previous render fails if that render's listeners are
gone. One dropped file can change the message box twice, so the strip can render twice while a
weight is typed: the reload test once lost a weight of 0.5 that way. The rows are keyed so that a
render which changes nothing in a row keeps its components and listeners.
"""

from __future__ import annotations

import json
import uuid

import httpx

from tests.conftest import REPO_ROOT

IMAGE = REPO_ROOT / "examples" / "sunset.jpg"
AUDIO = REPO_ROOT / "examples" / "dog_bark.wav"


class Tab:
    """One browser tab's session: events sent to the queue by id, as the page's JavaScript does."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = uuid.uuid4().hex
        self.config = httpx.get(f"{self.url}/config").json()
        self.ids = {c["props"]["elem_id"]: c["id"] for c in self.config["components"] if c.get("props", {}).get("elem_id")}

    def dependency(self, target: int, event: str, outputs: int) -> int:
        return next(d["id"] for d in self.config["dependencies"] if [target, event] in d["targets"] and len(d["outputs"]) == outputs)

    def call(self, fn: int, data: list, trigger: int | None) -> dict:
        """Run one event; its output message (the render's config, for a render)."""
        body = {"data": data, "fn_index": fn, "session_hash": self.session, "event_data": None, "trigger_id": trigger}
        httpx.post(f"{self.url}/gradio_api/queue/join", json=body, timeout=30).raise_for_status()
        with httpx.stream("GET", f"{self.url}/gradio_api/queue/data", params={"session_hash": self.session}, timeout=30) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    assert message["success"], message
                    return message["output"]
        raise AssertionError("the queue closed before the event completed")

    def upload(self, *paths) -> list[dict]:
        files = [("files", (p.name, p.read_bytes())) for p in paths]
        uploaded = httpx.post(f"{self.url}/gradio_api/upload", files=files, timeout=30).json()
        return [{"path": u, "orig_name": p.name, "meta": {"_type": "gradio.FileData"}} for u, p in zip(uploaded, paths)]

    def drop(self, files: list[dict]) -> None:
        """The message box now holds `files` (uploaded): its change event (the session state goes as None, as the page sends it)."""
        box = self.ids["message"]
        self.call(self.dependency(box, "change", outputs=2), [{"text": "", "files": files}, None], box)

    def render_strip(self) -> dict[str, tuple[int, object, list[int]]]:
        """Render the strip: for each of its fields, by elem_id, the component's id, value and listeners."""
        render = next(d["id"] for d in self.config["dependencies"] if d.get("render_id") is not None)
        config = self.call(render, [None], None)["render_config"]
        fields = {}
        for component in config["components"]:
            elem_id = component["props"].get("elem_id") or ""
            if elem_id.startswith(("strip-weight-", "strip-kind-")):
                listeners = [d["id"] for d in config["dependencies"] if any(t[0] == component["id"] for t in d["targets"])]
                fields[elem_id] = (component["id"], component["props"]["value"], listeners)
        return fields


def test_a_render_that_changes_no_row_keeps_its_fields_and_listeners(app_url: str) -> None:
    tab = Tab(app_url)
    image = tab.upload(IMAGE)
    tab.drop(image)
    first = tab.render_strip()
    again = tab.render_strip()  # as when the box changed twice for one drop
    assert again == first and first["strip-weight-0"][1] == 1.0
    (weight, _, (set_weight,)) = first["strip-weight-0"]
    tab.call(set_weight, [0.5, None], weight)  # the listener of the first render still answers

    tab.drop(image + tab.upload(AUDIO))  # a second file: the strip's rows change, and show the weight the server holds
    after = tab.render_strip()
    assert after["strip-weight-0"][1] == 0.5 and after["strip-weight-1"][1] == 1.0
    assert after["strip-weight-0"][0] != weight, "a value the server changed is a new field, showing it"
    assert after["strip-weight-0"][2] == [set_weight], "its listener keeps its id"
