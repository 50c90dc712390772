"""Every bad input gets one clear error: a table of bad inputs across the API, the command line, model folders,
configs, audio, images and prompts. Each row asserts the error class (a subclass of AnyRefError, so no raw
traceback), a phrase of its message, a message of one line, and that no file the user made was changed."""
import hashlib
import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile
import torch

from anyref import AnyRefConfig, AnyRefModel, preset
from anyref.cli import error_line, main, run
from anyref.config import AudioConfig
from anyref.data import make_scene, object_crop, sound_for
from anyref.errors import AnyRefCheckpointError as Checkpoint
from anyref.errors import AnyRefConfigError as Config
from anyref.errors import AnyRefError
from anyref.errors import AnyRefInputError as Input
from anyref.errors import AnyRefUsageError as Usage
from anyref.predict import predict
from anyref.referring import Example, Region
from anyref.viz import save_image

QUESTION = "Can you segment the red circle in this image?"
SLOT_QUESTION = "Can you find similar object of <img.ref></img.ref> in this image?"
RATE = 16000


@dataclass
class World:
    """The files a user made (a saved micro model, a scene, an example crop, a wav) and the arrays behind them."""

    root: Path
    model: AnyRefModel
    image: np.ndarray
    crop: np.ndarray
    sound: np.ndarray

    def path(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory, micro_model) -> World:
    root = tmp_path_factory.mktemp("user")
    micro_model.save_pretrained(root / "model")
    scene = make_scene(np.random.default_rng(1), image_size=64)
    crop = object_crop(scene, 0)
    save_image(root / "scene.png", scene.image)
    save_image(root / "crop.png", crop)
    sound = sound_for("circle", seed=0, index=0)
    soundfile.write(root / "sound.wav", sound, RATE)
    return World(root, micro_model, scene.image, crop, sound)


@dataclass
class Case:
    """One bad input: `make(world, tmp)` prepares any files in tmp and returns the call that must fail."""

    name: str
    error: type
    phrase: str
    make: Callable


CASES: list[Case] = []


def api(name, error, phrase, call):
    """A Python call; `call(world, tmp)` runs it."""
    CASES.append(Case(name, error, phrase, lambda w, tmp: lambda: call(w, tmp)))


def ask(name, error, phrase, **kwargs):
    """predict(model, scene image, QUESTION, **kwargs); "model", "image" and "text" replace those arguments, and a
    callable value is called with (world, tmp) first (it may write files)."""
    def make(w, tmp):
        args = {"image": w.image, "text": QUESTION, **{k: v(w, tmp) if callable(v) else v for k, v in kwargs.items()}}
        model = args.pop("model", w.model)
        return lambda: predict(model, args.pop("image"), args.pop("text"), **args)
    CASES.append(Case(name, error, phrase, make))


def cli(name, error, phrase, argv):
    """`anyref ARGV`; "{root}" and "{tmp}" in an argument become the user's folder and a scratch folder."""
    def make(w, tmp):
        args = [a.format(root=w.root, tmp=tmp) for a in argv]
        return lambda: run(args)
    CASES.append(Case(name, error, phrase, make))


def folder(name, error, phrase, damage):
    """AnyRefModel.from_pretrained on a copy of the user's model folder after `damage(folder)`."""
    def make(w, tmp):
        copy = Path(shutil.copytree(w.root / "model", tmp / "model"))
        damage(copy)
        return lambda: AnyRefModel.from_pretrained(copy)
    CASES.append(Case(name, error, phrase, make))


def config_edit(name, error, phrase, edit):
    """A model folder whose config.json was edited as a dict by `edit(config)`."""
    def damage(copy):
        config = json.loads((copy / "config.json").read_text())
        edit(config)
        (copy / "config.json").write_text(json.dumps(config))
    folder(name, error, phrase, damage)


def sets(section, key, value):
    """An edit that sets config[section][key] (or config[key] when section is None)."""
    return lambda c: (c if section is None else c[section]).__setitem__(key, value)


def write(path: Path, content) -> str:
    """Write bytes or text to path; returns it as a string."""
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return str(path)


def wav(tmp: Path, samples, rate: int = RATE, name: str = "bad.wav") -> str:
    soundfile.write(tmp / name, samples, rate)
    return str(tmp / name)


class Planted:
    """A pickle that would create the file `marker` if anything unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


# ---- images given to predict ---------------------------------------------------------------------------------------
ask("image-float32", Input, "dtype must be uint8", image=np.zeros((64, 64, 3), np.float32))
ask("image-channels-first", Input, "channels first", image=np.zeros((3, 64, 64), np.uint8))
ask("image-2d", Input, r"shape \(H, W, 3\)", image=np.zeros((64, 64), np.uint8))
ask("image-rgba", Input, "3 RGB channels", image=np.zeros((64, 64, 4), np.uint8))
ask("image-tiny", Input, "at least 16x16", image=np.zeros((8, 8, 3), np.uint8))
ask("image-list", Input, "numpy array or torch tensor", image=[[1, 2, 3]])
ask("image-none", Input, "numpy array or torch tensor", image=None)
ask("image-path", Input, "got str", image=lambda w, tmp: w.path("scene.png"))
ask("image-4d", Input, "3 RGB channels", image=np.zeros((1, 64, 64, 3), np.uint8))

# ---- prompts ---------------------------------------------------------------------------------------------------------
ask("text-empty", Input, "empty", text="")
ask("text-blank", Input, "empty", text="   ")
ask("text-none-no-reference", Input, "nothing to ask", text=None)
ask("text-int", Input, "must be a string", text=7)
ask("text-bytes", Input, "must be a string", text=b"Can you segment the circle?")
ask("text-too-long", Input, "tokens long", text="can you segment the " + "red " * 200 + "circle")
ask("text-unknown-word", Input, "not in the model's vocabulary", text="can you segment the zebra")
ask("text-image-token", Input, "added by the model", text="<image> can you segment the circle")
ask("text-obj-token", Input, r"special token\(s\) \['<obj>'\]", text="Can you segment <obj> in this image?")
ask("text-eos-token", Input, r"\['</s>'\]", text="Can you segment the circle </s> in this image?")
ask("text-bos-token", Input, r"\['<s>'\]", text="<s> Can you segment the circle in this image?")
ask("text-pad-token", Input, r"\['<pad>'\]", text="Can you segment the <pad> circle in this image?")
ask("text-unk-token", Input, r"\['<unk>'\]", text="Can you segment the <unk> in this image?")
ask("text-orphan-ref-end", Input, "empty pair", text="Can you segment </img.ref> in this image?")
ask("text-filled-ref", Input, "empty pair", text="Can you find similar object of <img.ref>red</img.ref> in this image?")
ask("text-open-ref", Input, "empty pair", text="Can you find similar object of <img.ref> in this image?")
ask("text-crossed-refs", Input, "empty pair", text="Can you segment <img.ref></aud.ref> in this image?")
ask("text-slot-without-reference", Input, "reference slots", text=SLOT_QUESTION)
ask("text-reference-without-slot", Input, "reference slots", box=(4, 4, 30, 30))
ask("text-audio-slot-for-box", Input, "reference slots", box=(4, 4, 30, 30),
    text="Can you segment the object that makes sound of <aud.ref></aud.ref> in this image?")

# ---- boxes -----------------------------------------------------------------------------------------------------------
ask("box-int", Input, "four numbers", text=None, box=5)
ask("box-three-numbers", Input, "four numbers", text=None, box=(1, 2, 3))
ask("box-five-numbers", Input, "four numbers", text=None, box=(1, 2, 3, 4, 5))
ask("box-string", Input, "four numbers", text=None, box="1234")
ask("box-word-coordinate", Input, "four numbers", text=None, box=(0, 0, "a", 10))
ask("box-nan", Input, "non-finite", text=None, box=(0, 0, float("nan"), 10))
ask("box-inf", Input, "non-finite", text=None, box=(0, 0, float("inf"), 10))
ask("box-inverted", Input, "inverted", text=None, box=(30, 30, 4, 4))
ask("box-degenerate", Input, "degenerate", text=None, box=(4, 4, 5, 30))
ask("box-outside", Input, "outside the 64x64 image", text=None, box=(0, 0, 90, 10))
ask("box-negative", Input, "outside", text=None, box=(-5, 0, 20, 20))
ask("box-2x2-array", Input, "four numbers", text=None, box=np.zeros((2, 2)))

# ---- explicit reference lists ----------------------------------------------------------------------------------------
ask("references-tuple", Input, "not a reference", text=None, references=[(1, 2, 3, 4)])
ask("references-array", Input, "not a reference", text=None, references=[np.zeros((8, 8, 3), np.uint8)])
ask("references-not-a-list", Input, "must be a list", text=None, references=Region((4, 4, 30, 30)))
ask("references-and-box", Input, "not both", text=None, references=[Region((4, 4, 30, 30))], box=(4, 4, 30, 30))
ask("references-and-sample-rate", Input, "not both", text=None, references=[Region((4, 4, 30, 30))],
    sample_rate=RATE)
ask("references-region-outside", Input, "outside", text=None, references=[Region((0, 0, 100, 100))])
ask("references-black-example", Input, "all black", text=None, references=[Example(np.zeros((8, 8, 3), np.uint8))])
ask("references-string", Input, "not a reference", text=None, references=["crop.png"])

# ---- example images --------------------------------------------------------------------------------------------------
ask("examples-empty-list", Input, "empty list", text=None, examples=[])
ask("examples-path", Input, "read it first", text=None, examples=lambda w, tmp: w.path("crop.png"))
ask("examples-float", Input, "must be uint8", text=None, examples=np.ones((8, 8, 3), np.float32))
ask("examples-1x1", Input, "crop is empty", text=None, examples=np.full((1, 1, 3), 200, np.uint8))
ask("examples-black", Input, "all black", text=None, examples=np.zeros((8, 8, 3), np.uint8))
ask("examples-second-not-image", Input, r"shape \(h, w, 3\)", text=None, examples=lambda w, tmp: [w.crop, 5])
ask("examples-gray", Input, r"shape \(h, w, 3\)", text=None, examples=np.full((8, 8), 200, np.uint8))

# ---- audio -----------------------------------------------------------------------------------------------------------
ask("audio-missing-file", Input, "does not exist", text=None, audio=lambda w, tmp: str(tmp / "none.wav"))
ask("audio-folder", Input, "is a folder", text=None, audio=lambda w, tmp: str(tmp))
ask("audio-empty-file", Input, "cannot be read as sound", text=None, audio=lambda w, tmp: write(tmp / "e.wav", b""))
ask("audio-corrupt-wav", Input, "cannot be read as sound", text=None,
    audio=lambda w, tmp: write(tmp / "c.wav", b"RIFF1234WAVEjunkjunk"))
ask("audio-png", Input, "cannot be read as sound", text=None, audio=lambda w, tmp: w.path("scene.png"))
ask("audio-text-file", Input, "cannot be read as sound", text=None, audio=lambda w, tmp: write(tmp / "t.wav", "hi"))
ask("audio-truncated-wav", Input, "cannot be read as sound", text=None,
    audio=lambda w, tmp: write(tmp / "cut.wav", (w.root / "sound.wav").read_bytes()[:30]))
ask("audio-silent-file", Input, "silent", text=None, audio=lambda w, tmp: wav(tmp, np.zeros(RATE, np.float32)))
ask("audio-short-file", Input, "lasts 0.10 s", text=None, audio=lambda w, tmp: wav(tmp, w.sound[: RATE // 10]))
ask("audio-array-without-rate", Input, "sample_rate", text=None, audio=lambda w, tmp: w.sound)
ask("audio-file-with-rate", Input, "carries its own sample rate", text=None, sample_rate=RATE,
    audio=lambda w, tmp: w.path("sound.wav"))
ask("audio-rate-zero", Input, "positive int", text=None, audio=lambda w, tmp: w.sound, sample_rate=0)
ask("audio-rate-float", Input, "positive int", text=None, audio=lambda w, tmp: w.sound, sample_rate=16000.5)
ask("audio-rate-without-audio", Input, "without audio", text=None, box=(4, 4, 30, 30), sample_rate=RATE)
ask("audio-int16", Input, "integer PCM", text=None, sample_rate=RATE,
    audio=lambda w, tmp: (w.sound * 32767).astype(np.int16))
ask("audio-silent-array", Input, "silent", text=None, audio=np.zeros(RATE, np.float32), sample_rate=RATE)
ask("audio-too-short", Input, "lasts 0.20 s", text=None, sample_rate=RATE, audio=lambda w, tmp: w.sound[: RATE // 5])
ask("audio-too-long", Input, "lasts 61.00 s", text=None, sample_rate=RATE,
    audio=np.full(61 * RATE, 0.1, np.float32))
ask("audio-nan", Input, "NaN or inf", text=None, sample_rate=RATE,
    audio=np.where(np.arange(RATE) == 5, np.nan, 0.1).astype(np.float32))
ask("audio-loud", Input, "peaks at 4.4", text=None, sample_rate=RATE, audio=lambda w, tmp: w.sound * 10)
ask("audio-two-channels", Input, "several channels", text=None, sample_rate=RATE,
    audio=lambda w, tmp: np.stack([w.sound, w.sound]))
ask("audio-3d", Input, r"\(T,\) mono", text=None, sample_rate=RATE, audio=np.zeros((2, 2, RATE), np.float32))
ask("audio-list", Input, "numpy array or torch tensor", text=None, sample_rate=RATE, audio=[0.1] * RATE)

# ---- generation settings and the model argument --------------------------------------------------------------------
ask("max-new-tokens-negative", Input, "max_new_tokens must be a positive int", max_new_tokens=-1)
ask("max-new-tokens-zero", Input, "got 0", max_new_tokens=0)
ask("max-new-tokens-float", Input, "got 2.5", max_new_tokens=2.5)
ask("max-new-tokens-bool", Input, "got True", max_new_tokens=True)
ask("max-new-tokens-string", Input, "got '5'", max_new_tokens="5")
ask("model-none", Input, "must be an AnyRefModel", model=None)
ask("model-path", Input, "must be an AnyRefModel", model=lambda w, tmp: w.path("model"))

# ---- model folders ---------------------------------------------------------------------------------------------------
api("folder-missing", Checkpoint, "not an AnyRef checkpoint", lambda w, tmp: AnyRefModel.from_pretrained(tmp / "x"))
api("folder-none", Checkpoint, "is a path", lambda w, tmp: AnyRefModel.from_pretrained(None))
api("folder-is-a-file", Checkpoint, "not an AnyRef checkpoint",
    lambda w, tmp: AnyRefModel.from_pretrained(w.root / "scene.png"))
folder("weights-missing", Checkpoint, r"missing \['model.safetensors'\]", lambda d: (d / "model.safetensors").unlink())
folder("tokenizer-missing", Checkpoint, r"missing \['tokenizer'\]", lambda d: shutil.rmtree(d / "tokenizer"))
folder("config-missing", Checkpoint, r"missing \['config.json'\]", lambda d: (d / "config.json").unlink())
folder("weights-truncated", Checkpoint, "not a readable safetensors file",
       lambda d: write(d / "model.safetensors", (d / "model.safetensors").read_bytes()[:1000]))
folder("weights-random", Checkpoint, "not a readable safetensors file",
       lambda d: write(d / "model.safetensors", np.random.default_rng(0).bytes(5000)))
folder("weights-empty", Checkpoint, "not a readable safetensors file", lambda d: write(d / "model.safetensors", b""))
folder("weights-folder", Checkpoint, "not a readable safetensors file",
       lambda d: ((d / "model.safetensors").unlink(), (d / "model.safetensors").mkdir()))
folder("weights-torch-pickle", Checkpoint, "pickles are never loaded",
       lambda d: torch.save({"x": torch.zeros(2)}, d / "model.safetensors"))
folder("weights-other-model", Checkpoint, "do not match",
       lambda d: __import__("safetensors.torch").torch.save_file({"x": torch.zeros(2)}, str(d / "model.safetensors")))
config_edit("config-prompt-dim", Checkpoint, "do not match", sets("sam", "prompt_dim", 48))
config_edit("config-hidden-size", Checkpoint, "size mismatch", sets("llm", "hidden_size", 48))
config_edit("config-no-lora", Checkpoint, "do not match", sets("llm", "use_lora", False))
config_edit("config-hidden-zero", Checkpoint, "cannot be built", sets("llm", "hidden_size", 0))
config_edit("config-heads-3", Checkpoint, "cannot be built", sets("llm", "num_heads", 3))
folder("config-invalid-json", Config, "not valid JSON", lambda d: write(d / "config.json", "{bad"))
folder("config-empty-file", Config, "not valid JSON", lambda d: write(d / "config.json", ""))
folder("config-list", Config, "must be a JSON object of AnyRefConfig fields, got a list",
       lambda d: write(d / "config.json", "[]"))
folder("config-null", Config, "got null", lambda d: write(d / "config.json", "null"))
folder("config-binary", Config, "cannot read config file", lambda d: write(d / "config.json", b"\xff\xfe\x00\x81"))
folder("config-folder", Config, "cannot read config file",
       lambda d: ((d / "config.json").unlink(), (d / "config.json").mkdir()))
config_edit("config-llm-int", Config, "llm must be a JSON object of LLMConfig fields", sets(None, "llm", 5))
config_edit("config-refocus-string", Config, "refocus_weight must be a finite number, got '0.1'",
            sets(None, "refocus_weight", "0.1"))
config_edit("config-no-llm", Config, r"lacks the section\(s\) \['llm'\]", lambda c: c.pop("llm"))
config_edit("config-no-sections", Config, "lacks the section", lambda c: [c.pop(k) for k in ("vision", "sam")])
config_edit("config-unknown-key", Config, r"unknown key\(s\) \['presett'\]", sets(None, "presett", "mini"))
config_edit("config-unknown-llm-key", Config, r"llm has unknown key\(s\) \['hidden'\]", sets("llm", "hidden", 8))
config_edit("config-bool-as-string", Config, "use_lora must be true/false", sets("llm", "use_lora", "yes"))
config_edit("config-fraction-size", Config, "hidden_size must be an integer", sets("llm", "hidden_size", 32.5))
config_edit("config-bool-size", Config, "hidden_size must be an integer", sets("llm", "hidden_size", True))
config_edit("config-indexes-string", Config, "must be a list of integers", sets("sam", "global_attn_indexes", "ab"))
config_edit("config-indexes-floats", Config, r"global_attn_indexes\[0\] must be an integer",
            sets("sam", "global_attn_indexes", [1.5]))
config_edit("config-path-int", Config, "tokenizer_path must be a string or null", sets(None, "tokenizer_path", 5))
config_edit("config-audio-heads", Config, "divisible by num_heads", sets("audio", "num_heads", 5))
folder("config-nan", Config, "finite number", lambda d: write(
    d / "config.json", (d / "config.json").read_text().replace('"refocus_weight": 0.1', '"refocus_weight": NaN')))
folder("tokenizer-json-schema", Checkpoint, "tokenizer .* cannot be loaded",
       lambda d: write(d / "tokenizer" / "tokenizer.json", '{"a": 1}'))
folder("tokenizer-json-invalid", Checkpoint, "tokenizer .* cannot be loaded",
       lambda d: write(d / "tokenizer" / "tokenizer.json", "not json"))
folder("tokenizer-config-invalid", Checkpoint, "tokenizer .* cannot be loaded",
       lambda d: write(d / "tokenizer" / "tokenizer_config.json", "not json"))

config_edit("config-llm-folder-missing", Checkpoint, "LLM folder", sets("llm", "pretrained_path", "/nowhere/llm"))
config_edit("config-sam-checkpoint-missing", Checkpoint, "SAM checkpoint",
            sets("sam", "checkpoint", "/nowhere/sam.pth"))
api("preset-tokenizer-folder-missing", Checkpoint, "tokenizer folder",
    lambda w, tmp: AnyRefModel(preset("micro", tokenizer_path=str(tmp / "no-tokenizer"))))

# ---- configs built in Python -----------------------------------------------------------------------------------------
api("from-dict-list", Config, "must be a JSON object", lambda w, tmp: AnyRefConfig.from_dict([]))
api("from-dict-partial", Config, "lacks the section", lambda w, tmp: AnyRefConfig.from_dict({"preset": "mini"}))
api("preset-unknown", Config, "unknown preset 'huge'", lambda w, tmp: preset("huge"))
api("preset-override-type", Config, "refocus_weight must be a finite number",
    lambda w, tmp: preset("micro", refocus_weight="0.1"))
api("preset-override-unknown", Config, "unknown config field 'nonsense'", lambda w, tmp: preset("micro", nonsense=1))
api("preset-override-section", Config, "llm must be a JSON object of LLMConfig", lambda w, tmp: preset("micro", llm=5))
api("audio-config-type", Config, "embed_dim must be an integer",
    lambda w, tmp: AudioConfig.from_dict({"embed_dim": "64"}))
api("audio-config-unknown", Config, "unknown key", lambda w, tmp: AudioConfig.from_dict({"bogus": 1}))

# ---- the command line ------------------------------------------------------------------------------------------------
PREDICT = ["predict", "--model", "{root}/model", "--image", "{root}/scene.png"]
cli("cli-no-command", Usage, "required: command", [])
cli("cli-unknown-command", Usage, "invalid choice: 'bogus'", ["bogus"])
cli("cli-unknown-flag", Usage, "unrecognized arguments: --bogus", [*PREDICT, "--bogus"])
cli("cli-predict-no-image", Usage, "required: --image", ["predict", "--model", "{root}/model"])
cli("cli-predict-missing-model", Checkpoint, "not an AnyRef checkpoint",
    ["predict", "--model", "{tmp}/none", "--image", "{root}/scene.png", "--text", QUESTION])
cli("cli-predict-missing-image", Input, "--image .* does not exist", ["predict", "--model", "{root}/model",
                                                                     "--image", "{tmp}/none.png"])
cli("cli-predict-image-folder", Input, "is a folder", ["predict", "--model", "{root}/model", "--image", "{tmp}"])
cli("cli-predict-text-as-png", Input, "cannot be read as an image",
    ["predict", "--model", "{root}/model", "--image", "{tmp}/text.png"])
cli("cli-predict-truncated-png", Input, "cannot be read as an image",
    ["predict", "--model", "{root}/model", "--image", "{tmp}/truncated.png"])
cli("cli-predict-tiny-png", Input, "--image .*at least 16x16", ["predict", "--model", "{root}/model", "--image",
                                                               "{tmp}/tiny.png"])
cli("cli-predict-missing-example", Input, "--example .* does not exist", [*PREDICT, "--example", "{tmp}/none.png"])
cli("cli-out-missing-folder", Input, "does not exist; create it first", [*PREDICT, "--out", "{tmp}/none/o.png"])
cli("cli-out-unknown-suffix", Input, "must end in one of", [*PREDICT, "--out", "{tmp}/overlay.txt"])
cli("cli-out-is-input", Input, "one of the input files", [*PREDICT, "--out", "{root}/scene.png"])
cli("cli-out-is-folder", Input, "is a folder", [*PREDICT, "--out", "{tmp}/dir.png"])
cli("cli-predict-corrupt-audio", Input, "cannot be read as sound", [*PREDICT, "--audio", "{root}/crop.png"])
cli("cli-predict-box-outside", Input, "outside", [*PREDICT, "--box", "0", "0", "90", "10"])
cli("cli-predict-box-three", Usage, "expected 4 arguments", [*PREDICT, "--box", "1", "2", "3"])
cli("cli-predict-box-words", Usage, "invalid float value: 'a'", [*PREDICT, "--box", "a", "b", "c", "d"])
cli("cli-predict-obj-text", Input, "special token", [*PREDICT, "--text", "Can you segment <obj> in this image?"])
cli("cli-predict-unknown-word", Input, "vocabulary", [*PREDICT, "--text", "can you segment the zebra"])
cli("cli-train-steps-zero", Usage, "--steps: must be a positive integer, got '0'", ["train", "--steps", "0"])
cli("cli-train-steps-negative", Usage, "positive integer, got '-5'", ["train", "--steps", "-5", "--out", "{tmp}/m"])
cli("cli-train-steps-word", Usage, "positive integer, got 'many'", ["train", "--steps", "many", "--out", "{tmp}/m"])
cli("cli-train-batch-zero", Usage, "--batch-size: must be a positive integer", ["train", "--batch-size", "0"])
cli("cli-train-lr-negative", Usage, "--lr: must be a positive number", ["train", "--lr=-1", "--out", "{tmp}/m"])
cli("cli-train-lr-nan", Usage, "--lr: must be a positive number", ["train", "--lr", "nan", "--out", "{tmp}/m"])
cli("cli-train-minutes-zero", Usage, "--minutes: must be a positive number", ["train", "--minutes", "0"])
cli("cli-train-seed-negative", Usage, "--seed: must be a non-negative integer", ["train", "--seed=-1"])
cli("cli-train-checkpoint-zero", Usage, "--checkpoint-every", ["train", "--checkpoint-every", "0"])
cli("cli-train-preset", Usage, "invalid choice: 'huge'", ["train", "--preset", "huge", "--out", "{tmp}/m"])
cli("cli-train-no-out", Usage, "required: --out", ["train"])
cli("cli-train-image-size", Input, r"image_size must be an int in \[48", ["train", "--image-size", "20", "--preset",
                                                                         "micro", "--out", "{tmp}/m"])
cli("cli-train-tasks-word", Input, "task=weight", ["train", "--tasks", "text=abc", "--out", "{tmp}/m"])
cli("cli-train-tasks-unknown", Input, "task=weight", ["train", "--tasks", "bogus=1", "--out", "{tmp}/m"])
cli("cli-train-tasks-negative", Input, "task=weight", ["train", "--tasks", "text=-1", "--out", "{tmp}/m"])
cli("cli-train-tasks-zero", Input, "positive sum", ["train", "--tasks", "text=0", "--out", "{tmp}/m"])
cli("cli-train-out-not-empty", Input, "is not empty; pass --overwrite", ["train", "--out", "{root}/model"])
cli("cli-train-out-file", Input, "is a file", ["train", "--out", "{root}/scene.png"])
cli("cli-train-run-dir-file", Input, "--run-dir .* is a file", ["train", "--out", "{tmp}/m", "--run-dir",
                                                                "{root}/scene.png"])
cli("cli-scene-image-size", Input, r"image_size must be an int in \[48", ["scene", "--image-size", "20", "--out",
                                                                         "{tmp}/s.png"])
cli("cli-scene-out-folder", Input, "create it first", ["scene", "--out", "{tmp}/none/s.png"])
cli("cli-scene-out-suffix", Input, "must end in one of", ["scene", "--out", "{tmp}/scene.bmp"])
cli("cli-scene-index", Usage, "--index: must be a non-negative integer",
    ["scene", "--index=-1", "--out", "{tmp}/s.png"])
cli("cli-eval-num", Usage, "--num: must be a positive integer", ["eval", "--model", "{root}/model", "--num", "0"])
cli("cli-eval-split", Usage, "invalid choice: 'train'", ["eval", "--model", "{root}/model", "--splits", "train"])
cli("cli-eval-image-size", Input, "image_size must be", ["eval", "--model", "{root}/model", "--image-size", "20"])
cli("cli-eval-missing-model", Checkpoint, "not an AnyRef checkpoint", ["eval", "--model", "{tmp}/none", "--num", "1"])
cli("cli-pretrain-unknown", Usage, "invalid choice: 'bert'", ["pretrain", "bert"])
cli("cli-pretrain-steps", Usage, "--steps: must be a positive integer", ["pretrain", "sam", "--steps", "0"])
cli("cli-pretrain-device", Usage, "must be a torch device", ["pretrain", "clip", "--device", "toaster"])
cli("cli-pretrain-region-steps", Config, "region_steps belongs to CLIP-mini",
    ["pretrain", "sam", "--region-steps", "5", "--out", "{tmp}/sam"])


def snapshot(*roots: Path) -> dict:
    """Every file under the roots with its sha256: what the user has on disk."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file()}


def scratch(world: World, tmp: Path) -> None:
    """Bad image files every row may name: a folder, a text file and a truncated PNG named .png, an 8 px PNG."""
    (tmp / "dir.png").mkdir()
    write(tmp / "text.png", "not an image")
    write(tmp / "truncated.png", (world.root / "scene.png").read_bytes()[:300])
    save_image(tmp / "tiny.png", np.full((8, 8, 3), 200, np.uint8))


def test_the_table_is_large_and_distinct():
    names = [case.name for case in CASES]
    assert len(CASES) >= 100 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input_gets_one_clear_error(case, world, tmp_path):
    scratch(world, tmp_path)
    call = case.make(world, tmp_path)
    before = snapshot(world.root, tmp_path)
    with pytest.raises(case.error, match=case.phrase) as caught:
        call()
    assert isinstance(caught.value, AnyRefError)
    assert "\n" not in str(caught.value), "the message must fit on one line"
    assert snapshot(world.root, tmp_path) == before, "a file the user made was changed"
    if case.name.startswith("cli-"):
        assert error_line(caught.value).startswith("anyref") and "\n" not in error_line(caught.value)


def test_a_torch_image_is_accepted(world):
    assert predict(world.model, torch.from_numpy(world.image), QUESTION).masks.shape[1:] == (64, 64)


def test_a_prompt_without_room_for_obj(world):
    """A prompt that fits max_text_tokens but leaves no room for "<obj>" and the end token is refused."""
    from anyref.tokens import encode

    limit, question = world.model.config.max_text_tokens, "can you segment the circle"
    while len(encode(world.model.tokenizer, question, "", max_tokens=10**6)[0]) < limit:  # prompt + end token
        question += " red"
    with pytest.raises(Input, match=f"at most {limit - 2} fit"):
        predict(world.model, world.image, question)


def test_a_planted_pickle_never_runs(world, tmp_path):
    copy = Path(shutil.copytree(world.root / "model", tmp_path / "model"))
    marker = tmp_path / "it-ran"
    (copy / "model.safetensors").write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(Checkpoint, match="model.safetensors"):
        AnyRefModel.from_pretrained(copy)
    assert not marker.exists()


def test_main_prints_one_line_and_exits_2(world, tmp_path, capsys):
    assert main(["predict", "--model", str(world.root / "model"), "--image", str(world.root / "scene.png"),
                 "--out", str(tmp_path / "none" / "o.png")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (f"anyref predict: error: --out '{tmp_path / 'none' / 'o.png'}': the folder "
                                    f"'{tmp_path / 'none'}' does not exist; create it first")
    assert main(["train", "--steps", "0"]) == 2
    assert capsys.readouterr().err == ("anyref train: error: argument --steps: must be a positive integer, got '0' "
                                       "(see `anyref train --help`)\n")


def test_a_stereo_wav_is_averaged_with_a_note(world, tmp_path, capsys):
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.stack([world.sound, world.sound], 1), RATE)
    assert main(["predict", "--model", str(world.root / "model"), "--image", str(world.root / "scene.png"),
                 "--audio", str(stereo)]) == 0
    err = capsys.readouterr().err
    assert f"anyref predict: note: audio file '{stereo}' has 2 channels; averaged them to mono" in err
