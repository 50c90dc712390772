"""ShapeScenes sounds: one recognisable synthetic sound per shape class, for audio-referring prompts.

circle = pure sine, square = square wave, triangle = triangle wave, star = repeated rising chirps,
hexagon = bursts of high-band noise, diamond = beeps alternating between two tones. Each sound has random
pitch, loudness, phase and background noise; the classes stay apart in pitch band, timbre and rhythm.
"""
from __future__ import annotations

import numpy as np

from ..errors import AnyRefInputError
from .shapescenes import SHAPES

SAMPLE_RATE = 16000
SECONDS = 5.0
SOUND_STREAM = 3  # SeedSequence stream of `sound_for` ([3, seed, index])
PITCH_JITTER = 0.2  # pitch factor drawn from [1 - j, 1 + j]
PEAK_RANGE = (0.3, 0.9)  # loudness: peak amplitude before background noise
NOISE_RANGE = (0.001, 0.01)  # background noise standard deviation
BASE_HZ = {"circle": 1100.0, "square": 220.0, "triangle": 500.0, "star": 300.0, "diamond": 1800.0}
CHIRP_PERIOD_S, CHIRP_RATIO = 0.5, 4.0  # star: each sweep rises by CHIRP_RATIO in CHIRP_PERIOD_S
BURST_RATE_HZ, BURST_S = 4.0, 0.12  # hexagon: noise bursts per second and their length
NOISE_BAND_HZ = (4000.0, 7500.0)  # hexagon: band of the burst noise
BEEP_S, BEEP_GAP_S, BEEP_RATIO = 0.15, 0.05, 1.5  # diamond: beep length, silence, high/low tone ratio
WAVETABLE = 2048  # samples per period of the square / triangle wavetables
FADE_S = 0.005  # ramp that removes clicks at the edges of chirps, bursts and beeps


def _check_shape(shape: str) -> None:
    """Raise AnyRefInputError unless shape is a ShapeScenes shape class."""
    if shape not in SHAPES:
        raise AnyRefInputError(f"unknown shape {shape!r}; sounds exist for {SHAPES}")


def _odd_harmonics(cycles: np.ndarray, freq: float, *, power: int, sample_rate: int) -> np.ndarray:
    """Band-limited sum of odd harmonics with amplitude 1/k**power (1: square, 2: triangle) at `cycles` periods."""
    orders = np.arange(1, int(sample_rate / 2 / freq) + 1, 2)  # (K,) odd harmonics below Nyquist
    signs = (-1.0) ** ((orders - 1) // 2) if power == 2 else np.ones(len(orders))  # (K,)
    grid = np.linspace(0.0, 1.0, WAVETABLE + 1)  # (W+1,) one period
    table = (signs / orders**power) @ np.sin(2 * np.pi * orders[:, None] * grid)  # (W+1,)
    return np.interp(cycles % 1.0, grid, table)  # (T,)


def _band_noise(rng: np.random.Generator, count: int, low: float, high: float, sample_rate: int) -> np.ndarray:
    """White noise with every frequency outside [low, high] Hz removed."""
    spectrum = np.fft.rfft(rng.standard_normal(count))  # (F,)
    freqs = np.fft.rfftfreq(count, d=1.0 / sample_rate)  # (F,)
    return np.fft.irfft(spectrum * ((freqs >= low) & (freqs <= high)), n=count)  # (T,)


def _gate(position: np.ndarray, length: float) -> np.ndarray:
    """1 inside [0, length) of each period position (seconds), with FADE_S ramps; 0 elsewhere."""
    ramp = np.minimum(position, length - position) / FADE_S  # (T,)
    return np.clip(ramp, 0.0, 1.0) * (position < length)  # (T,)


def _raw(shape: str, t: np.ndarray, rng: np.random.Generator, pitch: float, sample_rate: int) -> np.ndarray:
    """Noise-free waveform of a shape's sound, peak-normalised to 1."""
    phase = rng.uniform(0.0, 2 * np.pi)
    offset = rng.uniform(0.0, 1.0)  # seconds; shifts the rhythm of the pulsed sounds
    if shape == "circle":
        wave = np.sin(2 * np.pi * BASE_HZ["circle"] * pitch * t + phase)  # (T,)
    elif shape in ("square", "triangle"):
        power = 1 if shape == "square" else 2
        freq = BASE_HZ[shape] * pitch
        wave = _odd_harmonics(freq * t + phase / (2 * np.pi), freq, power=power, sample_rate=sample_rate)  # (T,)
    elif shape == "star":
        local = (t + offset) % CHIRP_PERIOD_S  # (T,) time within the current sweep
        growth = np.log(CHIRP_RATIO) / CHIRP_PERIOD_S
        sweep_phase = 2 * np.pi * BASE_HZ["star"] * pitch * np.expm1(growth * local) / growth  # (T,)
        wave = np.sin(sweep_phase + phase) * _gate(local, CHIRP_PERIOD_S)  # (T,)
    elif shape == "hexagon":
        period = 1.0 / (BURST_RATE_HZ * pitch)
        low, high = (pitch * hz for hz in NOISE_BAND_HZ)
        wave = _band_noise(rng, len(t), low, high, sample_rate) * _gate((t + offset) % period, BURST_S)  # (T,)
    else:  # diamond
        period = BEEP_S + BEEP_GAP_S
        beep = np.floor((t + offset) / period)  # (T,) index of the current beep
        freq = BASE_HZ["diamond"] * pitch * np.where(beep % 2 == 0, 1.0, BEEP_RATIO)  # (T,)
        wave = np.sin(2 * np.pi * freq * t + phase) * _gate((t + offset) % period, BEEP_S)  # (T,)
    return wave / np.abs(wave).max()  # (T,)


def shape_sound(
    shape: str, rng: np.random.Generator, *, seconds: float = SECONDS, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A random sound of a shape class: float32 mono (T,) in [-1, 1], T = seconds * sample_rate."""
    _check_shape(shape)
    if not seconds > 0 or not isinstance(sample_rate, (int, np.integer)) or sample_rate < SAMPLE_RATE:
        raise AnyRefInputError(
            f"need seconds > 0 and an int sample_rate >= {SAMPLE_RATE} (the hexagon's noise reaches 9 kHz), "
            f"got seconds={seconds!r}, sample_rate={sample_rate!r}; resample the sound afterwards for lower rates"
        )
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate  # (T,) seconds
    pitch = rng.uniform(1.0 - PITCH_JITTER, 1.0 + PITCH_JITTER)
    peak = rng.uniform(*PEAK_RANGE)
    wave = peak * _raw(shape, t, rng, pitch, sample_rate)  # (T,)
    noise = rng.uniform(*NOISE_RANGE) * rng.standard_normal(len(t))  # (T,)
    return np.clip(wave + noise, -1.0, 1.0).astype(np.float32)  # (T,)


def sound_for(shape: str, *, seed: int, index: int) -> np.ndarray:
    """The sound of a shape fully determined by (seed, index): 5 s at 16 kHz, float32 (T,)."""
    for name, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise AnyRefInputError(f"{name} must be a non-negative int, got {value!r}")
    return shape_sound(shape, np.random.default_rng(np.random.SeedSequence([SOUND_STREAM, seed, index])))


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two sources played together: their sum, scaled down only when it would clip, float32 (T,)."""
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.ndim != 1 or a.shape != b.shape:
        raise AnyRefInputError(
            f"mix needs two mono waveforms of equal length, got shapes {a.shape} and {b.shape}; "
            "cut or pad them to the same number of samples"
        )
    total = a + b  # (T,)
    return total / max(1.0, float(np.abs(total).max()))  # (T,)
