"""Regenerate every example file of the demo gallery from code: `python examples/make_examples.py`.

Nothing here is third-party media: images are drawn with PIL, sounds are synthesised with numpy
(the speech clip alone comes from the `espeak-ng` synthesiser, run at generation time only), the
video is drawn frame by frame and encoded with PyAV. Every random choice uses a fixed seed, so a
rerun writes the same files. The outputs are committed, so the app itself needs none of the tools
used here (espeak-ng, sox) at run time.

Needs: numpy, pillow, soundfile, av (PyAV); optionally espeak-ng (and sox) for hello_speech.wav.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
AUDIO_RATE = 16_000
SPEECH_TEXT = "Hello, can you hear me? The weather is nice today."


def _rel(name: str) -> str:
    """Path of an example file relative to the repository root, with forward slashes."""
    return (HERE / name).relative_to(REPO_ROOT).as_posix()


def _lerp(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, ...]:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------- images


def make_sunset(path: Path, size: tuple[int, int] = (640, 426)) -> None:
    """Sky gradient, a setting sun with its glow and reflection, the sea, and a sailing boat."""
    width, height = size
    horizon = int(height * 0.58)
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)

    # Sky: deep blue at the top through purple to orange at the horizon.
    stops = [(0.0, (24, 32, 86)), (0.45, (118, 64, 128)), (0.8, (236, 116, 70)), (1.0, (255, 178, 92))]
    for y in range(horizon):
        t = y / max(horizon - 1, 1)
        for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
            if t0 <= t <= t1:
                draw.line([(0, y), (width, y)], fill=_lerp(c0, c1, (t - t0) / (t1 - t0)))
                break

    # Sun glow (soft, additive) and the sun itself, half set behind the horizon.
    sun_x, sun_y, sun_r = int(width * 0.62), horizon - 18, 46
    yy, xx = np.mgrid[0:height, 0:width]
    dist = np.hypot(xx - sun_x, yy - sun_y)
    glow = np.exp(-((dist / 140.0) ** 2))[..., None] * np.array([60, 40, 10])
    pixels = np.asarray(img, dtype=np.float64)
    pixels[:horizon] += glow[:horizon]
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    draw.ellipse([sun_x - sun_r, sun_y - sun_r, sun_x + sun_r, sun_y + sun_r], fill=(255, 214, 120))

    # A few thin clouds.
    for cx, cy, w in [(120, 70, 150), (420, 52, 110), (250, 120, 180), (540, 150, 90)]:
        draw.ellipse([cx - w // 2, cy - 6, cx + w // 2, cy + 6], fill=(196, 110, 132))

    # Sea: dark teal gradient below the horizon (covers the lower half of the sun).
    for y in range(horizon, height):
        t = (y - horizon) / max(height - horizon - 1, 1)
        draw.line([(0, y), (width, y)], fill=_lerp((70, 58, 92), (14, 28, 52), t))

    # Sun reflection: broken horizontal strokes narrowing with distance from the sun.
    rng = np.random.default_rng(1)
    for y in range(horizon + 3, height, 5):
        half = int(sun_r * (0.5 + 1.2 * (y - horizon) / (height - horizon)))
        for _ in range(3):
            x0 = sun_x + int(rng.integers(-half, half))
            length = int(rng.integers(8, 40))
            shade = _lerp((255, 196, 110), (150, 90, 70), (y - horizon) / (height - horizon))
            draw.line([(x0, y), (x0 + length, y)], fill=shade, width=2)

    # Boat silhouette: hull, mast and two sails, with a faint reflection.
    bx, by = int(width * 0.28), horizon + 48
    hull = [(bx - 60, by - 12), (bx + 64, by - 12), (bx + 44, by + 6), (bx - 44, by + 6)]
    draw.polygon(hull, fill=(20, 16, 26))
    draw.line([(bx, by - 12), (bx, by - 110)], fill=(20, 16, 26), width=4)
    draw.polygon([(bx + 3, by - 106), (bx + 3, by - 18), (bx + 56, by - 18)], fill=(36, 28, 40))
    draw.polygon([(bx - 3, by - 96), (bx - 3, by - 18), (bx - 44, by - 18)], fill=(36, 28, 40))
    draw.polygon([(bx - 44, by + 8), (bx + 44, by + 8), (bx + 30, by + 16), (bx - 30, by + 16)], fill=(30, 30, 50))

    # A pair of birds.
    for cx, cy in [(170, 90), (196, 104)]:
        draw.arc([cx - 10, cy - 6, cx, cy + 4], 200, 340, fill=(30, 20, 40), width=2)
        draw.arc([cx, cy - 6, cx + 10, cy + 4], 200, 340, fill=(30, 20, 40), width=2)

    img.save(path, "JPEG", quality=90)


def make_red_apple(path: Path, size: tuple[int, int] = (480, 480)) -> None:
    """A shaded red apple with stem and leaf on a wooden table in front of a pale wall."""
    width, height = size
    table_y = int(height * 0.62)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)

    # Wall: warm off-white with a soft vertical gradient; table: wood with grain stripes.
    pixels = np.empty((height, width, 3))
    wall_t = (yy / table_y)[..., None]
    pixels[:] = np.array([238, 230, 214]) * (1 - 0.15 * wall_t)
    grain = 0.5 + 0.5 * np.sin(yy * 0.9 + 6 * np.sin(xx / 37.0) + 2 * np.sin(xx / 11.0))
    depth_t = ((yy - table_y) / (height - table_y))[..., None]
    wood = np.array([150, 96, 52]) * (0.85 + 0.15 * grain[..., None]) * (0.8 + 0.2 * depth_t)
    pixels[yy >= table_y] = wood[yy >= table_y]
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    draw.line([(0, table_y), (width, table_y)], fill=(110, 70, 40), width=3)

    # Shadow on the table, blurred.
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).ellipse([150, table_y + 38, 350, table_y + 76], fill=120)
    shadow = shadow.filter(ImageFilter.GaussianBlur(10))
    img = Image.composite(Image.new("RGB", size, (60, 36, 20)), img, shadow)

    # Apple body: two overlapping lobes, shaded by a light from the upper left.
    cx, cy = 245, table_y - 52
    lobes = ((cx - 42, cy, 82, 96), (cx + 42, cy, 82, 96), (cx, cy + 10, 110, 100))
    inside = np.zeros((height, width), dtype=bool)
    for lx, ly, rx, ry in lobes:
        inside |= ((xx - lx) / rx) ** 2 + ((yy - ly) / ry) ** 2 <= 1.0
    light = np.clip(1.0 - np.hypot(xx - (cx - 55), yy - (cy - 50)) / 230.0, 0, 1)
    red = np.stack([110 + 140 * light, 8 + 30 * light, 12 + 25 * light], axis=-1)
    body = np.asarray(img, dtype=np.float64)
    body[inside] = red[inside]
    # Specular highlight.
    spec = np.exp(-(((xx - (cx - 52)) / 16) ** 2 + ((yy - (cy - 48)) / 24) ** 2))
    body += (spec * inside)[..., None] * np.array([120, 120, 120])
    img = Image.fromarray(np.clip(body, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)

    # Dimple, stem and leaf.
    top = cy - 92
    draw.arc([cx - 26, top - 10, cx + 26, top + 16], 20, 160, fill=(90, 10, 14), width=3)
    draw.line([(cx, top + 6), (cx + 6, top - 34)], fill=(84, 52, 26), width=7)
    draw.polygon([(cx + 6, top - 22), (cx + 40, top - 50), (cx + 78, top - 40), (cx + 44, top - 14)], fill=(70, 140, 48))
    draw.line([(cx + 8, top - 22), (cx + 76, top - 40)], fill=(44, 96, 30), width=2)

    img.save(path, "PNG", optimize=True)


def make_thermal_person(path: Path, size: tuple[int, int] = (320, 240)) -> None:
    """Thermal-camera style grayscale: a warm standing person (head, torso, arms, legs) on a cool scene."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(7)

    # Cool background: slightly warmer floor, a faint cool-warm gradient and sensor noise.
    base = 38 + 14 * (yy / height) + 6 * np.sin(xx / 50.0)
    base[yy > 205] += 10

    def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0

    cx = width / 2
    heat = np.zeros((height, width))
    parts = [
        (ellipse(cx, 42, 17, 21), 235),  # head (warmest)
        (ellipse(cx, 66, 8, 8), 215),  # neck
        (ellipse(cx, 108, 32, 46), 200),  # torso
        (ellipse(cx - 38, 104, 9, 40), 190),  # left arm
        (ellipse(cx + 38, 104, 9, 40), 190),  # right arm
        (ellipse(cx - 14, 178, 12, 46), 180),  # left leg
        (ellipse(cx + 14, 178, 12, 46), 180),  # right leg
    ]
    for mask, temp in parts:
        heat = np.where(mask, np.maximum(heat, temp), heat)
    person = heat > 0
    pixels = np.where(person, heat, base)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L").filter(ImageFilter.GaussianBlur(3))
    noisy = np.asarray(img, dtype=np.float64) + rng.normal(0, 2.0, (height, width))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "L").save(path, "PNG", optimize=True)


def make_depth_room(path: Path, size: tuple[int, int] = (320, 240)) -> None:
    """16-bit disparity (brighter = nearer) of a room: back wall, side walls, floor, and a box in front."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    far, near = 9000.0, 62000.0
    horizon = 110.0  # row where floor meets back wall

    # Back wall: constant (far) disparity.
    disp = np.full((height, width), far)
    # Floor: on a ground plane disparity grows linearly with the row below the horizon.
    floor = yy >= horizon
    disp[floor] = far + (yy[floor] - horizon) / (height - 1 - horizon) * (near - far)
    # Side walls: disparity grows linearly toward the image edges (left wall and right wall).
    back_left, back_right = 70.0, width - 70.0
    left = xx < back_left
    disp[left] = np.maximum(disp[left], far + (back_left - xx[left]) / back_left * (near - far) * 0.8)
    right = xx > back_right
    disp[right] = np.maximum(disp[right], far + (xx[right] - back_right) / (width - back_right) * (near - far) * 0.8)

    # Box standing on the floor: its front face sits at the floor disparity of its base row.
    bx0, bx1, by0, by1 = 150, 235, 120, 190
    front = far + (by1 - horizon) / (height - 1 - horizon) * (near - far)
    disp[by0:by1, bx0:bx1] = front
    # Top face: slightly farther than the front face, receding upward.
    top_rows = np.arange(by0 - 14, by0)
    for i, y in enumerate(top_rows):
        inset = (len(top_rows) - i) * 0.8
        disp[y, int(bx0 + inset) : int(bx1 - inset)] = front - (len(top_rows) - i) * 300

    Image.fromarray(np.clip(np.round(disp), 0, 65535).astype(np.uint16)).save(path, "PNG", optimize=True)


# ------------------------------------------------------------------------------------------ audio


def _bandpass(noise: np.ndarray, rate: int, low: float, high: float) -> np.ndarray:
    """Zero-phase band-pass by zeroing FFT bins outside [low, high] Hz, with soft edges."""
    spectrum = np.fft.rfft(noise)
    freqs = np.fft.rfftfreq(len(noise), 1 / rate)
    gain = np.clip((freqs - low * 0.7) / (low * 0.3 + 1e-9), 0, 1) * np.clip((high * 1.3 - freqs) / (high * 0.3), 0, 1)
    return np.fft.irfft(spectrum * gain, n=len(noise))


def _normalize(samples: np.ndarray, peak: float = 0.9) -> np.ndarray:
    return samples * (peak / max(np.abs(samples).max(), 1e-9))


def _write_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    sf.write(str(path), np.clip(samples, -1.0, 1.0).astype(np.float32), rate, subtype="PCM_16")


def make_dog_bark(path: Path, seconds: float = 3.0, rate: int = AUDIO_RATE) -> None:
    """'Woof woof ... woof woof woof': bursts of a falling harmonic tone plus band-passed breath noise."""
    rng = np.random.default_rng(3)
    out = np.zeros(int(seconds * rate))
    barks = [(0.15, 1.0, 560), (0.52, 0.9, 520), (1.45, 1.0, 600), (1.78, 0.85, 540), (2.12, 0.95, 500)]
    for start, level, f0 in barks:
        dur = 0.22
        n = int(dur * rate)
        t = np.arange(n) / rate
        # Pitch jumps up quickly then falls, like a bark; sharp attack, exponential decay.
        pitch = f0 * (1 + 0.35 * np.exp(-t / 0.02)) * (1 - 0.35 * t / dur)
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        tone = sum((0.8**k) * np.sin(k * phase) for k in range(1, 9))
        env = (1 - np.exp(-t / 0.006)) * np.exp(-t / 0.06)
        breath = _bandpass(rng.normal(0, 1, n), rate, 300, 3500)
        burst = (0.6 * tone / 3 + 0.5 * breath) * env
        i = int(start * rate)
        out[i : i + n] += level * burst
    out += 0.003 * rng.normal(0, 1, len(out))  # faint room noise
    _write_wav(path, _normalize(out, 0.85), rate)


def make_rain(path: Path, seconds: float = 4.0, rate: int = AUDIO_RATE) -> None:
    """Steady rain: band-passed noise with a slow swell, plus random droplet pings and clicks."""
    rng = np.random.default_rng(5)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    hiss = _bandpass(rng.normal(0, 1, n), rate, 800, 6000)
    rumble = _bandpass(rng.normal(0, 1, n), rate, 60, 400)
    swell = 1 + 0.2 * np.sin(2 * np.pi * 0.3 * t) + 0.1 * np.sin(2 * np.pi * 0.77 * t + 1)
    out = (0.25 * hiss / hiss.std() + 0.08 * rumble / rumble.std()) * swell
    # Droplets: ~120 per second, each a tiny resonant ping at a random pitch and loudness.
    for start in np.sort(rng.uniform(0, seconds - 0.03, int(120 * seconds))):
        freq = rng.uniform(1500, 5500)
        m = int(rng.uniform(0.004, 0.02) * rate)
        tt = np.arange(m) / rate
        drop = np.sin(2 * np.pi * freq * tt * (1 + 2 * tt)) * np.exp(-tt / (m / rate / 4))
        i = int(start * rate)
        out[i : i + m] += rng.uniform(0.05, 0.6) * drop
    _write_wav(path, _normalize(out, 0.7), rate)


def _resample(samples: np.ndarray, src: int, dst: int) -> np.ndarray:
    """FFT resampling (band-limited), for when sox is not available."""
    n_out = int(round(len(samples) * dst / src))
    spectrum = np.fft.rfft(samples)
    keep = n_out // 2 + 1
    spectrum = spectrum[:keep] if len(spectrum) >= keep else np.pad(spectrum, (0, keep - len(spectrum)))
    return np.fft.irfft(spectrum, n=n_out) * (n_out / len(samples))


def make_hello_speech(path: Path, rate: int = AUDIO_RATE) -> bool:
    """Speech from espeak-ng, converted to 16 kHz mono 16-bit. Returns False (file kept) if espeak-ng is missing."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        print(f"espeak-ng not found: skipping {path.name} (the committed file is left as it is)")
        return False
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(raw), SPEECH_TEXT], check=True)
        samples, src_rate = sf.read(str(raw), dtype="float64", always_2d=True)
    samples = samples.mean(axis=1)
    if src_rate != rate:
        samples = _resample(samples, src_rate, rate)
    pad = np.zeros(int(0.25 * rate))  # short silence either side
    _write_wav(path, _normalize(np.concatenate([pad, samples, pad]), 0.8), rate)
    return True


# ------------------------------------------------------------------------------------------ video


def _pick_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def make_bouncing_ball(path: Path, seconds: float = 3.0, fps: int = 15, size: tuple[int, int] = (320, 240)) -> str:
    """An orange ball bouncing across a checkered floor under gravity, losing a little height each bounce."""
    width, height = size
    floor_y = 190
    radius = 16
    codec = _pick_codec()

    # Background: wall gradient and a tiled floor, drawn once.
    bg = Image.new("RGB", size)
    draw = ImageDraw.Draw(bg)
    for y in range(floor_y):
        draw.line([(0, y), (width, y)], fill=_lerp((170, 200, 235), (220, 232, 245), y / floor_y))
    for y in range(floor_y, height):
        draw.line([(0, y), (width, y)], fill=(120, 96, 72))
    for x in range(-40, width + 40, 40):
        draw.line([(x, floor_y), (x + (x - width / 2) * 0.6, height)], fill=(96, 74, 54), width=2)
    draw.line([(0, floor_y), (width, floor_y)], fill=(80, 60, 44), width=2)

    # Physics: simulated at a fine step so bounces land exactly on the floor.
    g, restitution, vx = 900.0, 0.8, 110.0
    x, y, vy = 40.0, 60.0, 0.0
    steps_per_frame = 20
    dt = 1.0 / (fps * steps_per_frame)
    frames = []
    for _ in range(int(round(seconds * fps))):
        img = bg.copy()
        d = ImageDraw.Draw(img)
        # Shadow shrinks as the ball rises.
        h = max(floor_y - (y + radius), 0)
        sw = radius * (1.2 - 0.6 * min(h / 150, 1))
        d.ellipse([x - sw, floor_y + 2, x + sw, floor_y + 8], fill=(70, 52, 38))
        d.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(235, 90, 30), outline=(150, 50, 10), width=2)
        d.ellipse([x - radius * 0.55, y - radius * 0.6, x - radius * 0.1, y - radius * 0.2], fill=(255, 180, 120))
        frames.append(np.asarray(img))
        for _ in range(steps_per_frame):
            vy += g * dt
            y += vy * dt
            x += vx * dt
            if y + radius >= floor_y:
                y = floor_y - radius
                vy = -abs(vy) * restitution
            if x + radius >= width or x - radius <= 0:
                vx = -vx
                x = min(max(x, radius), width - radius)

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            # Single-threaded for byte-identical output; CRF keeps the file small.
            stream.options = {"crf": "23", "preset": "medium", "threads": "1"}
        else:
            stream.bit_rate = 800_000
            stream.thread_count = 1
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return codec


# -------------------------------------------------------------------------------------------- IMU


def make_imu_walking(path: Path, n_samples: int = 2000, rate: int = 200) -> None:
    """10 s of walking at 200 Hz: ~2 steps/s bounce on z (gravity 9.81), fore-aft and sway on x/y, gyro in rad/s."""
    rng = np.random.default_rng(11)
    t = np.arange(n_samples) / rate
    step = 2 * np.pi * 1.9 * t  # step frequency ~1.9 Hz
    stride = step / 2  # a stride is two steps (left + right)
    acc_x = 1.1 * np.sin(step + 0.6) + 0.3 * np.sin(2 * step + 0.2)  # forward-backward surge
    acc_y = 0.6 * np.sin(stride) + 0.15 * np.sin(step + 1.2)  # lateral sway
    acc_z = 9.81 + 2.2 * np.sin(step) + 0.7 * np.sin(2 * step + 0.5) + 0.3 * np.sin(3 * step + 1.0)  # bounce
    gyro_x = 0.35 * np.sin(stride + 0.4)  # roll rate
    gyro_y = 0.25 * np.sin(step + 1.1)  # pitch rate
    gyro_z = 0.2 * np.sin(stride + 1.6)  # yaw rate
    data = np.stack([acc_x, acc_y, acc_z, gyro_x, gyro_y, gyro_z], axis=1)
    data += rng.normal(0, 1, data.shape) * np.array([0.08, 0.08, 0.08, 0.01, 0.01, 0.01])
    lines = ["t,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z"]
    lines += [f"{ti:.3f}," + ",".join(f"{v:.4f}" for v in row) for ti, row in zip(t, data)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------- manifest

MODALITIES = ("image", "audio", "video", "thermal", "depth", "imu")


def _row(question: str, **files: str) -> dict:
    unknown = set(files) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modalities: {unknown}")
    return {"question": question, **{m: (_rel(files[m]) if m in files else None) for m in MODALITIES}}


def manifest() -> list[dict]:
    """The gallery rows: one question each, with the example files it uses (repo-relative paths)."""
    return [
        _row("Describe this image in detail.", image="sunset.jpg"),
        _row("What fruit is this, and is it ripe?", image="red_apple.png"),
        _row("What animal makes this sound?", audio="dog_bark.wav"),
        _row("How would this scene feel with this sound?", image="sunset.jpg", audio="rain.wav"),
        _row("What is happening in this recording?", audio="hello_speech.wav"),
        _row("What happens in this video?", video="bouncing_ball.mp4"),
        _row("What do you see in this thermal image?", thermal="thermal_person.png"),
        _row("Describe the layout of this room.", depth="depth_room.png"),
        _row("What activity does this motion recording show?", imu="imu_walking.csv"),
    ]


def main() -> int:
    make_sunset(HERE / "sunset.jpg")
    make_red_apple(HERE / "red_apple.png")
    make_thermal_person(HERE / "thermal_person.png")
    make_depth_room(HERE / "depth_room.png")
    make_dog_bark(HERE / "dog_bark.wav")
    make_rain(HERE / "rain.wav")
    make_hello_speech(HERE / "hello_speech.wav")
    codec = make_bouncing_ball(HERE / "bouncing_ball.mp4")
    make_imu_walking(HERE / "imu_walking.csv")
    (HERE / "examples.json").write_text(json.dumps(manifest(), indent=2) + "\n", encoding="utf-8")

    print(f"video codec: {codec}")
    total = 0
    for path in sorted(HERE.iterdir()):
        if path.is_file() and path.suffix not in (".py", ".md"):
            total += path.stat().st_size
            print(f"{path.stat().st_size:>9,d}  {path.relative_to(REPO_ROOT).as_posix()}")
    print(f"{total:>9,d}  total")
    return 0


if __name__ == "__main__":
    sys.exit(main())
