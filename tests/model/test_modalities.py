"""Behaviour of the loaders against independent computations of ImageBind's preprocessing (REFERENCE.md)."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from pandagpt_demo.model.modalities import (
    MediaError,
    Modality,
    audio_clip_bounds,
    load_audio,
    load_depth,
    load_image,
    load_imu,
    load_modality,
    load_thermal,
    load_video,
    sample_video_frames,
)
from tests.media import (
    imu_ramp,
    write_compressed_audio,
    write_depth_npy,
    write_depth_png16,
    write_image,
    write_imu_csv,
    write_samples,
    write_solid_image,
    write_stepped_wav,
    write_thermal,
    write_video,
    write_video_frames,
    write_wav,
)

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])
AUDIO_PAD_VALUE = ((torch.zeros(1) - (-4.268)) / 9.138).item()  # a zero-padded fbank frame, normalized


def expected_fbank(waveform: torch.Tensor) -> torch.Tensor:
    """ImageBind's waveform2melspec + Normalize for one clip, written out from REFERENCE.md."""
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_length=25,
        frame_shift=10,
    ).T
    fbank = F.pad(fbank, (0, 204 - fbank.size(1))) if fbank.size(1) < 204 else fbank[:, :204]
    return ((fbank + 4.268) / 9.138).unsqueeze(0)


def red_levels(video_crop: torch.Tensor) -> torch.Tensor:
    """Undo the normalization of a (3, T, H, W) crop and return its red channel in 0..255."""
    return (video_crop[0] * STD[0] + MEAN[0]) * 255


# ----------------------------------------------------------------------------- modality and errors


def test_modality_keys_and_extensions() -> None:
    assert Modality.IMAGE.encoder_key == "vision"
    assert Modality.VIDEO.encoder_key == "vision"
    assert {m.encoder_key for m in Modality} == {"vision", "audio", "thermal", "depth", "imu"}
    for modality in Modality:
        assert modality.extensions and all(e.startswith(".") and e == e.lower() for e in modality.extensions)
    assert ".npy" in Modality.DEPTH.extensions and ".csv" in Modality.IMU.extensions
    assert Modality("audio") is Modality.AUDIO


def test_media_error_message_and_attributes() -> None:
    err = MediaError(Modality.AUDIO, "/some/dir/rain.wav", "it is empty (0 samples)")
    assert str(err) == "Could not use the audio file 'rain.wav': it is empty (0 samples)."
    assert err.modality is Modality.AUDIO and err.path == Path("/some/dir/rain.wav")
    assert err.reason == "it is empty (0 samples)"
    assert isinstance(err, ValueError)


# ----------------------------------------------------------------------------- image and thermal


@pytest.mark.parametrize("size", [(320, 240), (240, 400), (224, 224), (500, 180)])
def test_image_matches_torchvision_reference(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "photo.png"
    write_image(path, size)
    reference = transforms.Compose(
        [
            transforms.Resize(224, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=MEAN.tolist(), std=STD.tolist()),
        ]
    )
    with Image.open(path) as img:
        expected = reference(img.convert("RGB"))
    result = load_image(path)
    assert result.shape == (3, 224, 224) and result.dtype == torch.float32
    torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_solid_colour_image_is_a_normalized_constant(tmp_path: Path) -> None:
    path = tmp_path / "solid.png"
    write_solid_image(path, (255, 0, 128))
    expected = (torch.tensor([255, 0, 128]) / 255.0 - MEAN) / STD
    result = load_modality(Modality.IMAGE, path)
    torch.testing.assert_close(result, expected.view(3, 1, 1).expand(3, 224, 224))


def test_image_modes_are_converted_to_rgb(tmp_path: Path) -> None:
    gray, rgba = tmp_path / "gray.png", tmp_path / "rgba.png"
    Image.new("L", (300, 260), 77).save(gray)
    Image.new("RGBA", (300, 260), (10, 20, 30, 0)).save(rgba)
    assert load_image(gray).shape == (3, 224, 224)
    torch.testing.assert_close(load_image(rgba)[:, 0, 0], (torch.tensor([10, 20, 30]) / 255.0 - MEAN) / STD)


def test_thermal_is_unnormalized_and_matches_reference(tmp_path: Path) -> None:
    path = tmp_path / "heat.png"
    write_thermal(path, (320, 240))
    reference = transforms.Compose(
        [transforms.Resize(224, interpolation=InterpolationMode.BICUBIC), transforms.CenterCrop(224), transforms.ToTensor()]
    )
    with Image.open(path) as img:
        expected = reference(img.convert("L"))
    result = load_thermal(path)
    assert result.shape == (1, 224, 224) and result.dtype == torch.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    torch.testing.assert_close(result, expected, rtol=0, atol=0)
    assert result[0, 112, 112] > result[0, 5, 5]  # the warm centre stays warm


def test_thermal_accepts_a_colour_image(tmp_path: Path) -> None:
    path = tmp_path / "colour.jpg"
    write_image(path, (300, 300))
    assert load_modality(Modality.THERMAL, path).shape == (1, 224, 224)


# ----------------------------------------------------------------------------- depth


def test_depth_png16_is_disparity_in_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "depth.png"
    pixels = write_depth_png16(path, (320, 240))
    result = load_depth(path)
    assert result.shape == (1, 224, 224) and result.dtype == torch.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    columns = result[0].mean(dim=0)
    assert torch.all(columns[1:] <= columns[:-1] + 1e-6)  # left (brighter) is nearer, stays larger
    # 320x240 -> 298x224, centre crop starts at x=37: output column 112 sits over input column ~160.
    assert columns[112].item() == pytest.approx(pixels[0, 160] / 65535, abs=0.01)


def test_depth_npy_metres_become_normalized_disparity(tmp_path: Path) -> None:
    path = tmp_path / "depth.npy"
    depth = write_depth_npy(path, (320, 240))
    result = load_modality(Modality.DEPTH, path)
    assert result.shape == (1, 224, 224) and result.dtype == torch.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    columns = result[0].mean(dim=0)
    assert columns[0] > columns[-1]  # nearer = larger
    nearest = depth[depth > 0].min()
    assert columns[112].item() == pytest.approx(nearest / depth[120, 160], abs=0.01)


def test_depth_8bit_png_takes_the_thermal_path(tmp_path: Path) -> None:
    path = tmp_path / "depth8.png"
    write_thermal(path, (320, 240))
    torch.testing.assert_close(load_depth(path), load_thermal(path), rtol=0, atol=2 / 255)


# ----------------------------------------------------------------------------- audio


def test_audio_clip_bounds_follow_the_sampler() -> None:
    assert audio_clip_bounds(7 * 16000) == [(0, 32000), (26666, 58666), (53333, 85333)]
    assert audio_clip_bounds(4800) == [(0, 32000)] * 3  # ends past the data: slices are just shorter
    assert audio_clip_bounds(32000) == [(0, 32000)] * 3


def test_mono_16k_audio_matches_fbank_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, 1.5, rate=16000, channels=1, freq=440)
    result = load_audio(path)
    assert result.shape == (3, 1, 128, 204) and result.dtype == torch.float32
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    torch.testing.assert_close(result[0], expected_fbank(torch.from_numpy(data.T.copy())))


def test_stereo_44k_audio_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    write_wav(path, 3.0, rate=44100, channels=2, freq=300)
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    resampled = torchaudio.functional.resample(torch.from_numpy(data.T.copy()), orig_freq=44100, new_freq=16000)
    result = load_modality(Modality.AUDIO, path)
    assert result.shape == (3, 1, 128, 204)
    # Clip 0 of a 3 s recording is samples [0, 32000); kaldi's fbank reads channel 0 after the
    # mean over both channels is removed.
    torch.testing.assert_close(result[0], expected_fbank(resampled[:, :32000]))


def test_overlapping_clips_see_the_earlier_in_place_mean_subtraction(tmp_path: Path) -> None:
    path = tmp_path / "offset.wav"
    t = np.arange(3 * 16000) / 16000
    write_samples(path, 0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * (t < 1.5), 16000)  # a DC step at 1.5 s
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    waveform = torch.from_numpy(data.T.copy())
    (start0, end0), (start1, end1), _ = audio_clip_bounds(waveform.size(1))
    # ImageBind's `waveform -= waveform.mean()` acts on a view, so clip 0's shift stays in the samples
    # that clip 1 (which overlaps it) reads next.
    shifted = waveform.clone()
    shifted[:, start0:end0] -= shifted[:, start0:end0].mean()
    result = load_audio(path)
    torch.testing.assert_close(result[0], expected_fbank(waveform[:, start0:end0]))
    torch.testing.assert_close(result[1], expected_fbank(shifted[:, start1:end1]))


def test_short_audio_gives_three_identical_clips(tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    write_wav(path, 0.3)
    result = load_audio(path)
    assert result.shape == (3, 1, 128, 204)
    # Identical up to float rounding: ImageBind's in-place mean subtraction runs on the same samples
    # three times, and the 2nd and 3rd time the remaining mean is a rounding residue, not exactly 0.
    torch.testing.assert_close(result[1], result[0], rtol=0, atol=1e-4)
    torch.testing.assert_close(result[2], result[0], rtol=0, atol=1e-4)
    frames = 1 + (4800 - 400) // 160  # 28 real frames, then padding
    assert torch.all(result[0, 0, :, frames:] == AUDIO_PAD_VALUE)
    assert not torch.all(result[0, 0, :, frames - 1] == AUDIO_PAD_VALUE)


def test_audio_shorter_than_one_frame_still_works(tmp_path: Path) -> None:
    path = tmp_path / "click.wav"
    write_wav(path, 0.01)  # 160 samples, less than one 25 ms frame
    result = load_audio(path)
    assert result.shape == (3, 1, 128, 204) and torch.isfinite(result).all()
    assert torch.all(result[0, 0, :, 1:] == AUDIO_PAD_VALUE)  # exactly one frame of content


def test_long_audio_clips_sit_where_the_sampler_puts_them(tmp_path: Path) -> None:
    path = tmp_path / "steps.wav"
    levels = [0.01 * 2**k for k in range(7)]  # each second twice as loud as the one before
    write_stepped_wav(path, levels)
    result = load_audio(path)
    assert not torch.allclose(result[0], result[1]) and not torch.allclose(result[1], result[2])
    # The loudest mel bin of a frame is log(power) = const + 2 ln(level) (before /9.138): subtracting
    # the level of the second the frame lies in must leave the same constant in every clip.
    residuals = []
    for clip, (start, _) in zip(result, audio_clip_bounds(7 * 16000)):
        for frame in range(198):  # 2 s of audio = 198 whole frames
            first, last = start + 160 * frame, start + 160 * frame + 399
            if first // 16000 == last // 16000:
                peak = clip[0, :, frame].max().item() * 9.138 - 4.268
                residuals.append(peak - 2 * math.log(levels[first // 16000]))
    assert len(residuals) > 500
    assert max(residuals) - min(residuals) < 0.05


def test_compressed_browser_audio_is_decoded_with_pyav(tmp_path: Path) -> None:
    webm, wav = tmp_path / "mic.webm", tmp_path / "mic.wav"
    samples = write_compressed_audio(webm, 1.0, rate=48000, codec="libopus")
    write_samples(wav, samples, 48000)
    with pytest.raises(sf.LibsndfileError):
        sf.read(webm)  # libsndfile cannot read this container
    result = load_audio(webm)
    assert result.shape == (3, 1, 128, 204)
    assert (result - load_audio(wav)).abs().mean() < 0.05  # same tone, lossy codec


# ----------------------------------------------------------------------------- video


def test_video_frame_sampler_indices() -> None:
    # 4 s at 10 fps: clips start every (4 - 2) / 5 = 0.4 s and last 2 s (20 frames); first and last kept.
    assert sample_video_frames(40, 10) == [[0, 19], [4, 23], [8, 27], [12, 31], [16, 35]]
    assert sample_video_frames(25, 10) == [[0, 19], [1, 20], [2, 21], [3, 22], [4, 23]]
    assert sample_video_frames(15, 30) == [[0, 14]] * 5  # shorter than 2 s: every clip is the whole video
    assert sample_video_frames(1, 10) == [[0, 0]] * 5
    assert sample_video_frames(90, 29.97) == [[0, 59], [7, 65], [13, 71], [19, 77], [25, 83]]
    # At 0.2 fps some clips fall between frames: they use the frame on screen when they start.
    assert sample_video_frames(3, 0.2) == [[0, 0], [0, 0], [1, 1], [1, 1], [2, 2]]


def test_video_uses_the_sampled_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_video(path, seconds=4, fps=10, size=(320, 240))
    result = load_video(path)
    assert result.shape == (15, 3, 2, 224, 224) and result.dtype == torch.float32
    # Frame i was written with red level 20 + 200 * i / 39; read the index back from each crop.
    for clip, indices in enumerate(sample_video_frames(40, 10)):
        for crop in range(3):
            levels = red_levels(result[clip * 3 + crop]).mean(dim=(1, 2))
            found = ((levels - 20) * 39 / 200).round().long().tolist()
            assert found == indices


def test_landscape_crops_are_left_centre_right(tmp_path: Path) -> None:
    path = tmp_path / "wide.mp4"
    x = np.arange(448)
    frame = np.zeros((224, 448, 3), dtype=np.uint8)
    frame[..., 0] = np.round(x * 255 / 447).astype(np.uint8)
    frame[..., 1] = 128
    write_video_frames(path, [frame] * 10, fps=10)
    result = load_video(path)
    for crop, offset in enumerate([0, 112, 224]):
        columns = red_levels(result[crop]).mean(dim=(0, 1))  # average over frames and rows
        expected = torch.from_numpy((offset + np.arange(224)) * 255 / 447).float()
        assert (columns - expected).abs().max() < 4, crop


def test_portrait_crops_are_top_centre_bottom(tmp_path: Path) -> None:
    path = tmp_path / "tall.mp4"
    y = np.arange(448)
    frame = np.zeros((448, 224, 3), dtype=np.uint8)
    frame[..., 0] = np.round(y * 255 / 447).astype(np.uint8)[:, None]
    frame[..., 2] = 200
    write_video_frames(path, [frame] * 10, fps=10)
    result = load_video(path)
    for crop, offset in enumerate([0, 112, 224]):
        rows = red_levels(result[crop]).mean(dim=(0, 2))
        expected = torch.from_numpy((offset + np.arange(224)) * 255 / 447).float()
        assert (rows - expected).abs().max() < 4, crop


def test_one_frame_video_matches_short_side_scale_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "still.mp4"
    frame = write_video(tmp_path / "source.mp4", seconds=1, fps=10, size=(640, 360))[5]
    write_video_frames(path, [frame], fps=10)
    result = load_modality(Modality.VIDEO, path)
    assert result.shape == (15, 3, 2, 224, 224)
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    clip = torch.from_numpy(decoded).permute(2, 0, 1)[:, None].float().repeat(1, 2, 1, 1) / 255
    scaled = F.interpolate(clip, size=(224, math.floor(640 / 360 * 224)), mode="bilinear", align_corners=False)
    scaled = (scaled - MEAN.view(3, 1, 1, 1)) / STD.view(3, 1, 1, 1)
    assert scaled.shape[-1] == 398
    for crop, offset in enumerate([0, 87, 174]):  # ceil((398 - 224) / 2) = 87
        expected = scaled[..., offset : offset + 224]
        for clip_index in range(5):
            torch.testing.assert_close(result[clip_index * 3 + crop], expected)


def test_video_decoding_is_thread_safe(tmp_path: Path) -> None:
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    write_video(first, seconds=3, fps=10, size=(320, 240))
    write_video(second, seconds=2.5, fps=8, size=(256, 320))
    expected = {first: load_video(first), second: load_video(second)}
    paths = [first, second] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(load_video, paths))
    assert all(torch.equal(result, expected[path]) for path, result in zip(paths, results))


# ----------------------------------------------------------------------------- IMU


def test_imu_csv_with_header_and_time_keeps_the_centre(tmp_path: Path) -> None:
    path = tmp_path / "walk.csv"
    data = imu_ramp(2500)
    write_imu_csv(path, data, header=True, time_column=True)
    result = load_imu(path)
    assert result.shape == (6, 2000) and result.dtype == torch.float32
    expected = torch.from_numpy(data[250:2250].T).float()  # centre 2000 of 2500
    torch.testing.assert_close(result, expected)


def test_imu_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    data = imu_ramp(2000)
    write_imu_csv(path, data, header=False, time_column=False)
    torch.testing.assert_close(load_modality(Modality.IMU, path), torch.from_numpy(data.T).float())


def test_imu_npy_both_layouts_and_padding(tmp_path: Path) -> None:
    rows, channels = tmp_path / "rows.npy", tmp_path / "channels.npy"
    data = imu_ramp(500)
    np.save(rows, data)
    np.save(channels, data.T.astype(np.float32))
    result = load_imu(rows)
    assert result.shape == (6, 2000)
    torch.testing.assert_close(result[:, :500], torch.from_numpy(data.T).float())
    assert torch.all(result[:, 500:] == 0)  # short recordings are zero-padded at the end
    torch.testing.assert_close(load_imu(channels), result)


def test_imu_long_npy_is_centre_cropped(tmp_path: Path) -> None:
    path = tmp_path / "long.npy"
    np.save(path, imu_ramp(3001))
    result = load_imu(path)
    assert result[0, 0].item() == 500 and result[0, -1].item() == 2499  # start (3001 - 2000) // 2


# ----------------------------------------------------------------------------- bad input


def _text_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("this is not media\n" * 20)
    return path


def _zero_sample_wav(tmp_path: Path) -> Path:
    path = tmp_path / "silence.wav"
    write_wav(path, 0.0)
    return path


def _frameless_mp4(tmp_path: Path) -> Path:
    path = tmp_path / "frameless.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        container.start_encoding()
    return path


def _truncated_mp4(tmp_path: Path) -> Path:
    full, path = tmp_path / "full.mp4", tmp_path / "broken.mp4"
    write_video(full, seconds=2, fps=10)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _imu_four_columns(tmp_path: Path) -> Path:
    path = tmp_path / "imu4.csv"
    path.write_text("a,b,c,d\n1,2,3,4\n5,6,7,8\n")
    return path


def _imu_text_cell(tmp_path: Path) -> Path:
    path = tmp_path / "imu_text.csv"
    write_imu_csv(path, imu_ramp(10), header=True, time_column=False)
    path.write_text(path.read_text().replace("3.0", "oops", 1))
    return path


def _rgb_depth(tmp_path: Path) -> Path:
    path = tmp_path / "colour_depth.png"
    write_image(path, (64, 64))
    return path


def _empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "nothing.png"
    path.write_bytes(b"")
    return path


def _audio_as_video(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    write_wav(path, 1.0)
    return path


BAD_INPUTS = [
    (Modality.AUDIO, lambda tmp: tmp / "missing.wav", "file not found"),
    (Modality.VIDEO, lambda tmp: tmp / "missing.mp4", "file not found"),
    (Modality.AUDIO, lambda tmp: _text_file(tmp, "notes.txt"), ".wav"),
    (Modality.IMAGE, lambda tmp: _text_file(tmp, "notes.png"), ".png"),
    (Modality.VIDEO, lambda tmp: _text_file(tmp, "notes.mp4"), ".mp4"),
    (Modality.AUDIO, _zero_sample_wav, "empty (0 samples)"),
    (Modality.VIDEO, _frameless_mp4, "no video track"),
    (Modality.VIDEO, _truncated_mp4, "not a readable video"),
    (Modality.VIDEO, _audio_as_video, "no video track"),
    (Modality.IMU, _imu_four_columns, "expected 6 columns (acc xyz, gyro xyz), found 4"),
    (Modality.IMU, _imu_text_cell, "is not a number: 'oops'"),
    (Modality.IMU, lambda tmp: _text_file(tmp, "notes.npy"), "not a readable .npy"),
    (Modality.DEPTH, _rgb_depth, "single-channel"),
    (Modality.THERMAL, _empty_file, "empty (0 bytes)"),
    (Modality.IMAGE, lambda tmp: tmp, "folder"),
]


NON_FINITE = {"NaN": math.nan, "+inf": math.inf, "-inf": -math.inf}


def _float_wav_with(value: float):
    """A float WAV (libsndfile keeps NaN and infinity in float samples) with one bad sample in its second channel."""

    def make(tmp: Path) -> Path:
        path = tmp / "float.wav"
        samples = np.full((16_000, 2), 0.25, dtype=np.float32)
        samples[1234, 1] = value
        sf.write(str(path), samples, 16_000, subtype="FLOAT")
        return path

    return make


def _npy_with(name: str, array: np.ndarray, index: tuple[int, int], value: float):
    """A .npy of `array` with `value` at `index`."""

    def make(tmp: Path) -> Path:
        path = tmp / name
        data = array.copy()
        data[index] = value
        np.save(path, data)
        return path

    return make


def _depth_npy_with(value: float):
    return _npy_with("depth_bad.npy", np.full((48, 64), 2.0, dtype=np.float32), (5, 7), value)


def _imu_npy_with(value: float):
    # Sample 2999 lies outside the centre window the loader keeps: a bad recording all the same.
    return _npy_with("imu_bad.npy", imu_ramp(3000).astype(np.float64), (2999, 4), value)


def _imu_csv_with(text: str):
    def make(tmp: Path) -> Path:
        path = tmp / "imu_bad.csv"
        write_imu_csv(path, imu_ramp(10), header=True, time_column=False)
        lines = path.read_text().splitlines()
        cells = lines[3].split(",")
        cells[2] = text
        lines[3] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return path

    return make


NON_FINITE_INPUTS = [
    *[
        (
            Modality.AUDIO,
            _float_wav_with(v),
            f"1 of its samples are not finite numbers (the first, at channel 1, sample 1234, is {'NaN' if n == 'NaN' else 'infinite'})",
        )
        for n, v in NON_FINITE.items()
    ],
    *[
        (
            Modality.DEPTH,
            _depth_npy_with(v),
            f"1 of its depth values are not finite numbers (the first, at row 5, column 7, is {'NaN' if n == 'NaN' else 'infinite'})",
        )
        for n, v in NON_FINITE.items()
    ],
    *[(Modality.IMU, _imu_npy_with(v), "1 of its samples are not finite numbers (the first, at channel 4, sample 2999") for v in NON_FINITE.values()],
    (Modality.IMU, _imu_npy_with(1e300), "at channel 4, sample 2999, is infinite"),  # finite in float64, not in float32
    *[(Modality.IMU, _imu_csv_with(text), f"row 4, column 3 is not a finite number: '{text}'") for text in ("nan", "inf", "-inf")],
]


@pytest.mark.parametrize(("modality", "make", "reason"), BAD_INPUTS + NON_FINITE_INPUTS)
def test_bad_input_raises_media_error(tmp_path: Path, modality: Modality, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(MediaError) as caught:
        load_modality(modality, path)
    message = str(caught.value)
    assert f"'{path.name}'" in message and f"the {modality.value} file" in message
    assert reason in message
    assert caught.value.modality is modality


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    write_image(path, (320, 240))
    with pytest.raises(MediaError, match=r"'big.png'.*too large \(320x240 pixels"):
        load_image(path, max_pixels=10_000)
    with pytest.raises(MediaError, match="thermal"):
        load_thermal(path, max_pixels=10_000)
    thin = tmp_path / "strip.png"
    write_image(thin, (100, 20))
    with pytest.raises(MediaError, match="too elongated"):
        load_image(thin, max_pixels=10_000)  # 2,000 pixels, but its short-side resize is 1120x224


def test_decompression_bomb_is_a_media_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bomb.png"
    write_image(path, (320, 240))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL raises above twice this
    with pytest.raises(MediaError, match="too large to decode safely"):
        load_image(path)
