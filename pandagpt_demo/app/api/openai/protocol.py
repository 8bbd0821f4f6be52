"""The chat-completions request as pydantic models: FastAPI checks a body against them before any
of it is decoded, and publishes them in `/v1/openapi.json`, where a client finds the extensions
(the `file` part and its `modality`, the top-level `weights`) beside OpenAI's own fields.

They hold the request's shape and the bounds that need no server setting. What depends on the
server (the largest `max_tokens`, `temperature` and weight; how many files) and on the order of
the messages is checked by request.py, which names the field as OpenAI's `param` too. Fields a
client may send that PandaGPT has no use for (`user`, penalties, `metadata`, ...) are ignored, as
OpenAI-compatible servers do; the ones it cannot honour (`tools`, `logprobs`, JSON answers, `n` > 1)
are refused with a message rather than silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from pandagpt_demo.model.modalities import Modality

MAX_MESSAGES = 10_000  # a history longer than this is the client's bug: the context holds far fewer turns
MAX_STOPS = 4  # as OpenAI


class Shape(BaseModel):
    """Every model here: NaN and infinities are not numbers a client means; unknown fields are ignored."""

    model_config = ConfigDict(allow_inf_nan=False, extra="ignore")


class TextPart(Shape):
    type: Literal["text"]
    text: str


class MediaUrl(Shape):
    url: str = Field(description="A base64 data URL (`data:<media type>;base64,...`), or an http(s) URL where the server allows remote media.")


class ImageUrlPart(Shape):
    type: Literal["image_url"]
    image_url: MediaUrl


WITH_SOUND = (
    "Also hear the video's own sound: its sound track joins as an audio input of its own (weight 1), right after the video; "
    "a video without sound is refused. Default false: PandaGPT sees a video's frames, not its sound (an extension)."
)


class VideoUrl(MediaUrl):
    with_sound: StrictBool = Field(False, description=WITH_SOUND)


class VideoUrlPart(Shape):
    """A video, as vLLM spells it."""

    type: Literal["video_url"]
    video_url: VideoUrl


class InputAudio(Shape):
    data: str = Field(description="The file's bytes in base64.")
    format: Literal["wav", "mp3"]


class InputAudioPart(Shape):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileData(Shape):
    file_data: str | None = Field(None, description="A base64 data URL, or plain base64 with a `filename` that ends in the file's suffix.")
    filename: str | None = None
    file_id: str | None = Field(None, description="Not supported: this server keeps no files between requests.")

    @model_validator(mode="after")
    def _has_data(self) -> FileData:
        if self.file_data is None:
            raise ValueError("a file part must carry `file_data` (a data URL or base64) and a `filename`; file ids are not supported")
        return self


class FilePart(Shape):
    """Any kind PandaGPT takes (thermal images, depth maps, IMU recordings too): the extension part."""

    type: Literal["file"]
    file: FileData
    modality: Modality | None = Field(None, description="What the file is; guessed from its name and contents when absent.")
    with_sound: StrictBool = Field(False, description=f"For a video: {WITH_SOUND}")


UserPart = Annotated[TextPart | ImageUrlPart | VideoUrlPart | InputAudioPart | FilePart, Field(discriminator="type")]


class SystemMessage(Shape):
    """Accepted and ignored: PandaGPT's prompt has no place for a system message."""

    role: Literal["system", "developer"]
    content: str | list[TextPart]


class UserMessage(Shape):
    role: Literal["user"]
    content: str | list[UserPart]


class AssistantMessage(Shape):
    role: Literal["assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[object] | None = Field(None, description="Not supported: PandaGPT does not call tools.")
    function_call: object | None = Field(None, description="Not supported.")

    @model_validator(mode="after")
    def _no_tool_calls(self) -> AssistantMessage:
        if self.tool_calls or self.function_call:
            raise ValueError("tool calls are not supported: PandaGPT does not call tools")
        return self


Message = Annotated[SystemMessage | UserMessage | AssistantMessage, Field(discriminator="role")]


class StreamOptions(Shape):
    include_usage: StrictBool = False


class ResponseFormat(Shape):
    type: Literal["text"] = Field(description="Only text answers: PandaGPT cannot hold to a JSON schema.")


Stop = Annotated[str, Field(min_length=1)]
Weight = float | list[float]


class ChatCompletionRequest(Shape):
    """`POST /v1/chat/completions`'s body. Media of every user message are summed, as the page sums
    everything attached in a chat."""

    model: str = Field(description="The served model's id (GET /v1/models).")
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1, description="Up to the server's limit.")
    max_completion_tokens: StrictInt | None = Field(None, ge=1, description="Wins over max_tokens; up to the server's limit.")
    temperature: float | None = Field(None, ge=0, description="0 is greedy; up to the server's limit.")
    top_p: float | None = Field(None, ge=0, le=1)
    seed: StrictInt | None = Field(None, ge=-(2**63), le=2**63 - 1, description="The same seed and request give the same answer.")
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = None
    n: StrictInt = Field(1, description="Only 1: one answer per request.")
    weights: dict[Modality, Weight] | None = Field(
        None,
        description="Extension: how much each modality's files count in the sum, a number per modality or a list with one number per file.",
    )
    tools: list[object] | None = Field(None, description="Not supported.")
    functions: list[object] | None = Field(None, description="Not supported.")
    response_format: ResponseFormat | None = None
    logprobs: StrictBool | None = Field(None, description="Not supported.")

    @field_validator("n")
    @classmethod
    def _one_answer(cls, n: int) -> int:
        if n != 1:
            raise ValueError(f"n must be 1 (one answer per request), not {n}")
        return n

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list[object] | None) -> list[object] | None:
        if value:
            raise ValueError("not supported: PandaGPT does not call tools")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value


class ErrorDetail(Shape):
    message: str
    type: str = Field(description="invalid_request_error (4xx), rate_limit_error (429) or server_error (5xx).")
    param: str | None = Field(description="The request field at fault, as a path: `messages[0].content[1].image_url`.")
    code: str | None


class ErrorResponse(Shape):
    """Every answer on /v1 that is not a success."""

    error: ErrorDetail
