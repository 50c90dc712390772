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
    assert set(scores["val"]) == {"ciou", "giou", "obj_rate", "n", "answer_restates_expression"}
    assert scores["val"]["n"] == 2


def test_cli_predict_with_box_example_and_audio(tmp_path, capsys):
    import numpy as np
    import soundfile

    from anyref.data import make_scene, object_crop, sound_for
    from anyref.viz import save_image

    scene = make_scene(np.random.default_rng(1), image_size=64)
    image, crop, wav = tmp_path / "scene.png", tmp_path / "crop.png", tmp_path / "sound.wav"
    save_image(image, scene.image)
    save_image(crop, object_crop(scene, 0))
    soundfile.write(str(wav), sound_for("circle", seed=0, index=0), 16000)
    model = tmp_path / "model"
    assert main(["train", "--preset", "micro", "--steps", "2", "--batch-size", "2", "--image-size", "64",
                 "--tasks", "--out", str(model)]) == 0
    capsys.readouterr()
    box = [str(v) for v in scene.objects[0].box]
    for extra in (["--box", *box], ["--example", str(crop), "--example", str(crop)], ["--audio", str(wav)],
                  ["--text", "Can you segment the circle and <aud.ref></aud.ref> in this image?", "--audio", str(wav)]):
        assert main(["predict", "--model", str(model), "--image", str(image), *extra]) == 0, extra
        answer = json.loads(capsys.readouterr().out.splitlines()[0])
        few_shot = extra.count("--example") > 1  # one averaged mask, or none when no pass grounded its answer
        assert answer["masks"] == (min(1, answer["answer"].count("<obj>")) if few_shot else answer["answer"].count("<obj>"))
    assert main(["predict", "--model", str(model), "--image", str(image), "--box", "0", "0", "90", "10"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["predict", "--model", str(model), "--image", str(image), "--audio", str(tmp_path / "no.wav")]) == 2
    assert "does not exist" in capsys.readouterr().err
