"""AVSBench S4 (single source) and MS3 (multi-source) in the release's layout, read into samples and written.

    ROOT/Single-source/s4_meta_data.csv          name, start_time, category, split: one row per video
    ROOT/Single-source/s4_data/visual_frames/{split}/{category}/{name}/{name}_{1..5}.png
    ROOT/Single-source/s4_data/audio_wav/{split}/{category}/{name}.wav
    ROOT/Single-source/s4_data/gt_masks/{split}/{category}/{name}/{name}_{k}.png     train: frame 1 only
    ROOT/Multi-sources/ms3_meta_data.csv         name, split
    ROOT/Multi-sources/ms3_data/visual_frames/{name}/{name}.mp4_{1..5}.png           no split folder
    ROOT/Multi-sources/ms3_data/audio_wav/{split}/{name}.wav
    ROOT/Multi-sources/ms3_data/gt_masks/{split}/{name}/{name}_{1..5}.png            palette; nonzero = sounding

A video is 5 s: five frames, one at the end of each second, and 5 s of audio. `audio_window` says which audio a
frame is asked about: "clip" gives every frame the whole 5 s (the paper, Sec. 3.2.1: "5-second audio clips ...
3 fixed-sized embeddings", and the official code), "second" gives frame k its own second k, as AVSBench's per-frame
audio features do. ROOT may also be the Single-source / Multi-sources folder itself.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..audio import SILENCE_PEAK, load_waveform
from ..data.shapescenes import Scene
from ..data.tasks import TaskSample
from ..errors import AnyRefInputError
from ..evaluate import as_answerer, union_logits
from ..metrics import AVSMeter
from ..referring import Audio
from ..tokens import AUDIO_QUESTION, segment_answer
from .common import (AnyRefDataError, LazySamples, check_choice, check_size, limited, read_image, read_label,
                     new_file, require_file, write_png)

SUBSETS = {"s4": "Single-source", "ms3": "Multi-sources"}
TASKS = {"s4": "audio", "ms3": "audio_multi"}  # the ShapeScenes task each subset stands for
FRAMES = 5
SAMPLE_RATE = 16000
AUDIO_WINDOWS = ("clip", "second")
MS3_TARGET = "the sounding objects"  # MS3 names no class; the answer text is not scored


@dataclass(frozen=True)
class Video:
    """One row of the metadata CSV."""

    name: str
    split: str
    category: str = ""


class Layout:
    """Where AVSBench keeps a subset's files."""

    def __init__(self, root, subset: str):
        self.subset = check_choice(subset, SUBSETS, "AVSBench subset")
        root = Path(root)
        self.dir = root / SUBSETS[subset] if (root / SUBSETS[subset]).is_dir() else root
        self.csv = self.dir / f"{subset}_meta_data.csv"
        self.data = self.dir / f"{subset}_data"

    def _video_dir(self, kind: str, video: Video) -> Path:
        """The folder holding a video's frames or masks."""
        if self.subset == "s4":
            return self.data / kind / video.split / video.category / video.name
        return self.data / kind / (video.name if kind == "visual_frames" else Path(video.split, video.name))

    def frame(self, video: Video, k: int) -> Path:
        """Frame k (1..5) of a video."""
        suffix = f"_{k}" if self.subset == "s4" else f".mp4_{k}"
        return self._video_dir("visual_frames", video) / f"{video.name}{suffix}.png"

    def mask(self, video: Video, k: int) -> Path:
        """The ground-truth mask of frame k."""
        return self._video_dir("gt_masks", video) / f"{video.name}_{k}.png"

    def wav(self, video: Video) -> Path:
        """A video's 5 s of audio."""
        folder = Path(video.split, video.category) if self.subset == "s4" else Path(video.split)
        return self.data / "audio_wav" / folder / f"{video.name}.wav"

    def masked_frames(self, split: str) -> tuple[int, ...]:
        """The frames with a ground-truth mask: S4's train split annotates only the first."""
        return (1,) if self.subset == "s4" and split == "train" else tuple(range(1, FRAMES + 1))


def read_videos(layout: Layout, split: str) -> list[Video]:
    """The videos of a split, from the metadata CSV (first column: the name, as AVSBench's loaders take it)."""
    path = require_file(layout.csv, "AVSBench metadata CSV")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0] if rows else []
    needed = ("split", "category") if layout.subset == "s4" else ("split",)
    missing = [column for column in needed if column not in header]
    if missing:
        raise AnyRefDataError(f"{str(path)!r} has no column(s) {missing} in its header {header}; AVSBench's "
                              f"{layout.subset} CSV has {list(needed)}")
    videos = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise AnyRefDataError(f"{str(path)!r} line {line} has {len(row)} fields, the header {len(header)}")
        values = dict(zip(header, row))
        videos.append(Video(row[0], values["split"], values.get("category", "")))
    chosen = [video for video in videos if video.split == split]
    if not chosen:
        raise AnyRefDataError(f"{str(path)!r} has no videos in split {split!r}; its splits are "
                              f"{sorted({video.split for video in videos})}")
    return chosen


def load_audio(path: Path) -> np.ndarray:
    """A wav file as mono float32 (T,) at 16 kHz (channels averaged, other rates resampled)."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (RuntimeError, ValueError, OSError) as error:
        raise AnyRefDataError(f"audio {str(path)!r} cannot be decoded as a wav ({error}); re-extract it") from None
    try:
        return load_waveform(data, sample_rate=int(rate), average_channels=True).numpy()  # (T,)
    except AnyRefInputError as error:
        raise AnyRefDataError(f"audio {str(path)!r}: {error}") from None


def frame_audio(wave: np.ndarray, frame: int, window: str, path: Path) -> np.ndarray:
    """The audio frame k (1..5) is asked about: the whole clip, or its second (a short clip repeats its last)."""
    if window == "clip":
        return wave
    start = min(frame - 1, max(len(wave) // SAMPLE_RATE - 1, 0)) * SAMPLE_RATE
    second = wave[start:start + SAMPLE_RATE]  # (16000,)
    if np.abs(second).max() < SILENCE_PEAK:
        raise AnyRefDataError(f"audio {str(path)!r} is silent in second {frame}, which the audio encoder cannot "
                              "take; evaluate with the whole clip (audio_window='clip', --audio-window clip)")
    return second


class AVSFrames(LazySamples):
    """A split's frames, video by video (`frames_per_video` consecutive samples per video)."""

    def __init__(self, keys, build, *, frames_per_video: int):
        super().__init__(keys, build)
        self.frames_per_video = frames_per_video


def read_avsbench(root, subset: str, split: str, *, audio_window: str = "clip",
                  limit: int | None = None) -> AVSFrames:
    """Audio-referring samples (TaskSample, task "audio" for S4, "audio_multi" for MS3), one per annotated frame.

    `limit` counts videos. Every file is checked to exist before the first sample is built. The scenes have no
    objects: AVSBench annotates only what sounds, so the segment-everything floor is undefined here.
    """
    check_choice(audio_window, AUDIO_WINDOWS, "audio window")
    layout = Layout(root, subset)
    videos = limited(read_videos(layout, split), limit)
    frames = layout.masked_frames(split)
    for video in videos:
        for path in [layout.wav(video)] + [p for k in frames for p in (layout.frame(video, k), layout.mask(video, k))]:
            require_file(path, "AVSBench file")
    last = {}  # the last video's audio: its frames come one after another

    def build(key) -> TaskSample:
        video, k = key
        if video not in last:
            last.clear()
            last[video] = load_audio(layout.wav(video))
        image = read_image(layout.frame(video, k), "AVSBench frame")
        mask = read_label(layout.mask(video, k), "AVSBench mask") != 0  # (H, W) bool
        check_size(mask.shape, image.shape[:2], layout.mask(video, k), "AVSBench mask")
        text = video.category.replace("_", " ") if subset == "s4" else MS3_TARGET
        audio = Audio(frame_audio(last[video], k, audio_window, layout.wav(video)))
        return TaskSample(TASKS[subset], Scene(image, []), AUDIO_QUESTION, segment_answer(text), mask[None], (audio,),
                          text)
    return AVSFrames([(video, k) for video in videos for k in frames], build, frames_per_video=len(frames))


def export_avsbench(root, samples: dict, *, subset: str = "s4") -> Path:
    """Write ShapeScenes audio samples {split: [TaskSample]} as AVSBench videos under root; returns the CSV.

    A scene is a still image, so its video repeats it five times with the same mask; the audio is written as
    16 kHz float wav, exact (the release's wavs are 16-bit PCM, which the reader also takes). S4 categories are the
    samples' class names.
    """
    import soundfile

    layout = Layout(Path(root) / SUBSETS[subset], subset)
    new_file(layout.csv)  # refuse before writing anything: an existing copy stays as it is
    rows = []
    for split, items in samples.items():
        for sample in items:
            category = sample.target_text.replace(" ", "_") if subset == "s4" else ""
            video = Video(f"shapes_{len(rows):05d}", split, category)
            wave = np.asarray(sample.references[0].waveform, np.float32)
            soundfile.write(str(new_file(layout.wav(video))), wave, SAMPLE_RATE, subtype="FLOAT")
            mask = sample.masks.any(0).astype(np.uint8)  # (H, W)
            for k in range(1, FRAMES + 1):
                write_png(layout.frame(video, k), sample.scene.image)
            for k in layout.masked_frames(split):
                write_png(layout.mask(video, k), mask * 255 if subset == "s4" else mask, palette=subset == "ms3")
            rows.append([video.name, "0", video.category, split] if subset == "s4" else [video.name, split])
    with open(layout.csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "start_time", "category", "split"] if subset == "s4" else ["name", "split"])
        writer.writerows(rows)
    return layout.csv


def score_avsbench(answer, frames, *, frames_per_video: int, progress: bool = True, desc: str = "avs") -> dict:
    """AVSBench's mIoU and F-score from mask logits; `frames` run video by video, `frames_per_video` each.

    fscore follows AVSBench's test scripts (best-threshold F of each video's frames, averaged over videos);
    fscore_split is the same F over the whole split at once.
    """
    answer = as_answerer(answer)
    meter = AVSMeter()
    for sample in tqdm(frames, disable=not progress, desc=desc):
        meter.update(union_logits(answer(sample).mask_logits, sample.scene.image.shape[:2]), sample.masks[0])
    return {"miou": meter.miou, "fscore": meter.fscore_per_video(frames_per_video), "fscore_split": meter.fscore,
            "videos": len(frames) // frames_per_video, "frames": len(frames)}
