"""Tests for the ShapeScenes shape sounds."""
import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from anyref.data import SAMPLE_RATE, SHAPES, mix, shape_sound, sound_for
from anyref.errors import AnyRefInputError

torch.set_num_threads(1)


def log_mel_profile(wave):
    """Mean and standard deviation over time of each of 64 Kaldi log-mel bins: spectrum and its modulation."""
    fbank = kaldi.fbank(torch.from_numpy(wave)[None], sample_frequency=SAMPLE_RATE, num_mel_bins=64, dither=0.0,
                        window_type="hanning", htk_compat=True, use_energy=False)  # (frames, 64)
    return torch.cat([fbank.mean(dim=0), fbank.std(dim=0)])  # (128,)


@pytest.fixture(scope="module")
def profiles():
    """Log-mel profiles of 8 sounds per shape, (6, 8, 128)."""
    return torch.stack([torch.stack([log_mel_profile(sound_for(shape, seed=0, index=i)) for i in range(8)])
                        for shape in SHAPES])


def test_sound_is_deterministic_mono_float_in_range():
    wave = sound_for("star", seed=1, index=7)
    assert SAMPLE_RATE == 16000
    assert wave.shape == (5 * SAMPLE_RATE,) and wave.dtype == np.float32
    assert np.array_equal(wave, sound_for("star", seed=1, index=7))
    assert not np.array_equal(wave, sound_for("star", seed=1, index=8))
    assert not np.array_equal(wave, sound_for("star", seed=2, index=7))
    for shape in SHAPES:
        wave = sound_for(shape, seed=0, index=0)
        assert np.abs(wave).max() <= 1.0 and np.abs(wave).max() > 0.25


def test_shape_sound_length_follows_seconds_and_rate():
    wave = shape_sound("hexagon", np.random.default_rng(0), seconds=1.5, sample_rate=44100)
    assert wave.shape == (66150,) and np.isfinite(wave).all()


def test_shapes_are_told_apart_by_their_log_mel_spectrogram(profiles):
    """Nearest class centre (from sounds 0-3) recognises the held-out sounds 4-7 of every shape."""
    centres = profiles[:, :4].mean(dim=1)  # (6, 128)
    held_out = profiles[:, 4:].reshape(-1, profiles.shape[-1])  # (24, 128)
    predicted = torch.cdist(held_out, centres).argmin(dim=1)  # (24,)
    assert torch.equal(predicted, torch.arange(len(SHAPES)).repeat_interleave(4))
    gaps = torch.cdist(centres, centres) + 1e9 * torch.eye(len(SHAPES))  # (6, 6)
    assert gaps.min() > 10.0  # log-mel units, over 128 features in quadrature


def test_loudness_and_pitch_vary():
    peaks = [np.abs(sound_for("circle", seed=0, index=i)).max() for i in range(6)]
    assert np.ptp(peaks) > 0.1
    spectra = [np.abs(np.fft.rfft(sound_for("circle", seed=0, index=i))).argmax() for i in range(6)]
    assert len(set(spectra)) == 6


def test_mix_adds_sources_and_never_clips():
    a, b = sound_for("circle", seed=0, index=0), sound_for("hexagon", seed=0, index=0)
    both = mix(a, b)
    assert both.shape == a.shape and both.dtype == np.float32
    assert np.abs(both).max() <= 1.0 + 1e-6
    quiet = mix(0.1 * a, 0.1 * b)
    assert np.allclose(quiet, 0.1 * a + 0.1 * b, atol=1e-6)
    loud = mix(a / np.abs(a).max(), a / np.abs(a).max())
    assert np.isclose(np.abs(loud).max(), 1.0)


def test_bad_requests_raise_clear_errors():
    with pytest.raises(AnyRefInputError, match="unknown shape"):
        sound_for("pentagon", seed=0, index=0)
    with pytest.raises(AnyRefInputError, match="non-negative"):
        sound_for("circle", seed=-1, index=0)
    with pytest.raises(AnyRefInputError, match="equal length"):
        mix(np.zeros(10, np.float32), np.zeros(11, np.float32))
    with pytest.raises(AnyRefInputError, match="sample_rate"):
        shape_sound("circle", np.random.default_rng(0), sample_rate=8000)
