"""The command line: scene -> train (micro, a few steps) -> predict -> eval, end to end."""
import json

from anyref.cli import main


def test_cli_round_trip(tmp_path, capsys):
    scene = tmp_path / "scene.png"
    assert main(["scene", "--index", "2", "--image-size", "64", "--out", str(scene)]) == 0
    question = json.loads(capsys.readouterr().out)["question"]
    model = tmp_path / "model"
    assert main(["train", "--preset", "micro", "--steps", "3", "--batch-size", "2", "--image-size", "64",
                 "--out", str(model)]) == 0
    assert (model / "model.safetensors").exists() and (tmp_path / "model-run" / "checkpoint").is_dir()
    capsys.readouterr()
    overlay = tmp_path / "overlay.png"
    assert main(["predict", "--model", str(model), "--image", str(scene), "--text", question,
                 "--out", str(overlay)]) == 0
    answer = json.loads(capsys.readouterr().out.splitlines()[0])
    assert answer["masks"] == answer["answer"].count("<obj>") and overlay.exists()
    assert main(["train", "--preset", "micro", "--steps", "3", "--out", str(model)]) == 2  # refuses to overwrite
    capsys.readouterr()
    assert main(["eval", "--model", str(model), "--splits", "val", "--num", "2", "--image-size", "64"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores["val"]) == {"ciou", "giou", "obj_rate", "n"} and scores["val"]["n"] == 2
