"""Bad input gets a clear error naming the problem, not a deep traceback."""
import json

import numpy as np
import pytest
import torch

from anyref import AnyRefCheckpointError, AnyRefConfig, AnyRefConfigError, AnyRefInputError, AnyRefModel, preset
from anyref.cli import main as cli_main
from anyref.predict import predict

QUESTION = "Can you segment the red circle in this image?"


@pytest.fixture(scope="module")
def image():
    return np.zeros((64, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((64, 64, 3), dtype=np.float32), "dtype must be uint8"),
    (np.zeros((3, 64, 64), dtype=np.uint8), "channels first"),
    (np.zeros((64, 64), dtype=np.uint8), r"shape \(H, W, 3\)"),
    (np.zeros((64, 64, 4), dtype=np.uint8), "3 RGB channels"),
    (np.zeros((8, 8, 3), dtype=np.uint8), "at least 16x16"),
    ([[1, 2, 3]], "numpy array or torch tensor"),
])
def test_bad_images(micro_model, bad, message):
    with pytest.raises(AnyRefInputError, match=message):
        predict(micro_model, bad, QUESTION)


def test_torch_image_is_accepted(micro_model, image):
    assert predict(micro_model, torch.from_numpy(image), QUESTION).masks.shape[1:] == (64, 64)


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("   ", "empty"), (None, "nothing to ask"), (7, "must be a string"),
    ("can you segment the " + "red " * 200 + "circle", "tokens long"),
    ("can you segment the zebra", "not in the model's vocabulary"),
    ("<image> can you segment the circle", "added by the model"),
])
def test_bad_text(micro_model, image, text, message):
    with pytest.raises(AnyRefInputError, match=message):
        predict(micro_model, image, text)


def test_prompt_without_room_for_obj(micro_model, image):
    limit = micro_model.config.max_text_tokens
    words = "the red circle " * ((limit - 12) // 3)
    question = f"can you segment {words}"
    n = len(micro_model.tokenizer(question, add_special_tokens=False).input_ids)
    if n + 8 > limit:  # the prompt adds BOS, "USER :", "<image>" and "ASSISTANT :"
        with pytest.raises(AnyRefInputError, match="at most"):
            predict(micro_model, image, question)


def test_unknown_preset():
    with pytest.raises(AnyRefConfigError, match="unknown preset 'huge'.*micro"):
        preset("huge")


def test_unknown_config_key():
    with pytest.raises(AnyRefConfigError, match="unknown key"):
        AnyRefConfig.from_dict({"presett": "mini"})


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(AnyRefCheckpointError, match="not an AnyRef checkpoint"):
        AnyRefModel.from_pretrained(tmp_path / "nowhere")


def test_mismatched_checkpoint(micro_model, tmp_path):
    folder = micro_model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["llm"]["hidden_size"] = 48
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(AnyRefCheckpointError, match="do not match its config.json"):
        AnyRefModel.from_pretrained(folder)


def test_missing_pretrained_parts(tmp_path):
    config = preset("micro")
    config.llm.pretrained_path = str(tmp_path / "no-llama")
    with pytest.raises(AnyRefCheckpointError, match="LLM folder"):
        AnyRefModel(config)
    config = preset("micro")
    config.sam.checkpoint = str(tmp_path / "sam.pth")
    with pytest.raises(AnyRefCheckpointError, match="SAM checkpoint"):
        AnyRefModel(config)


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    code = cli_main(["predict", "--model", str(tmp_path / "none"), "--image", "x.png", "--text", "hi"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("anyref predict: error:") and "Traceback" not in err
