"""Batch recipes and one image through a recipe (no Dask here: see test_batch_cluster.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from batch_helpers import register_tiny_unet, write_corrupt, write_micrographs
from napari_microseg.core.batch import (
    InferenceSettings,
    PixelSizePolicy,
    Recipe,
    RecipeError,
    collect_inputs,
    output_paths,
    process_image,
    run_batch,
)
from napari_microseg.core.batch.runner import output_names
from napari_microseg.core.labels_io import read_labels
from napari_microseg.core.measure import MeasureSettings
from napari_microseg.core.measure.export import read_csv
from napari_microseg.core.models import PostprocessSettings
from napari_microseg.core.models.card import ModelError


@pytest.fixture
def tiny(tmp_path, monkeypatch, torch_one_thread):
    monkeypatch.setenv("MICROSEG_MODELS_DIR", str(tmp_path / "models"))
    return register_tiny_unet()


@pytest.fixture
def recipe(tiny):
    return Recipe.for_model(
        tiny.name,
        inference=InferenceSettings(tile=96, halo=8),
        postprocess=PostprocessSettings(
            thresholds={"1": 0.4, "3": 0.35}, min_size=2.0, min_size_unit="nm2"
        ),
        measure=MeasureSettings(edges="exclude", bins=12),
    )


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_recipe_round_trip_and_hash(recipe, tmp_path, suffix):
    path = recipe.save(tmp_path / f"r{suffix}")
    back = Recipe.load(path)
    assert back.to_dict() == recipe.to_dict()
    assert back.recipe_hash() == recipe.recipe_hash()
    assert back.model["weights_sha256"] == recipe.model["weights_sha256"]
    assert len(recipe.model["weights_sha256"]) == 64 and recipe.model["card"]["name"] == "tiny-unet"
    # description and provenance do not change the hash; any setting does
    back.description, back.provenance = "another text", {"saved_from": "elsewhere"}
    assert back.recipe_hash() == recipe.recipe_hash()
    for change in (
        lambda r: setattr(r.inference, "tta", True),
        lambda r: setattr(r.postprocess, "min_size", 3.0),
        lambda r: setattr(r.measure, "edges", "include"),
        lambda r: setattr(r, "pixel_size", PixelSizePolicy("override", 0.4)),
    ):
        other = Recipe.load(path)
        change(other)
        assert other.recipe_hash() != recipe.recipe_hash()


def _bad(d, **changes):
    d = json.loads(json.dumps(d))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            d[section][field] = value
        else:
            d[section] = value
    return d


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format_version": 2}, "newer than this napari-microseg reads"),
        ({"format": "something-else"}, "not a napari-microseg recipe"),
        ({"inference__tile": 4}, "inference.tile"),
        ({"inference__colour": "red"}, "unknown keys ['colour']"),
        ({"postprocess__thresholds": 1.5}, "postprocess.thresholds"),
        ({"postprocess__instances": "magic"}, "postprocess.instances"),
        ({"measure__edges": "sometimes"}, "measure.edges"),
        ({"pixel_size__policy": "override"}, "needs nm > 0"),
        ({"pixel_size__policy": "guess"}, "pixel_size.policy"),
        ({"classes": []}, "class table is empty"),
        ({"model": {"name": "../evil"}}, "model.name"),
    ],
)
def test_recipe_validation_names_the_problem(recipe, tmp_path, changes, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_bad(recipe.to_dict(), **changes)))
    with pytest.raises(RecipeError, match="bad.json") as e:
        Recipe.load(path)
    assert message in str(e.value)


def test_recipe_unreadable_files(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe"):
        Recipe.load(tmp_path / "missing.json")
    (tmp_path / "broken.yaml").write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.load(tmp_path / "broken.yaml")


def test_process_image_outputs_skip_and_overwrite(recipe, tmp_path):
    (img,) = write_micrographs(tmp_path / "in", 1, size=128)
    out = tmp_path / "out"
    res = process_image(recipe, img, out)
    assert res.status == "ok", res.error
    paths = output_paths(out, "img00")
    rec = read_labels(paths["labels"])
    assert rec.pixel_size.x_nm == pytest.approx(0.5) and rec.labels.shape == (128, 128)
    assert rec.metadata["settings"]["recipe_hash"] == recipe.recipe_hash()
    table, prov = read_csv(paths["objects"])
    assert len(table) == int(rec.labels.max()) == len(rec.instance_classes)
    assert set(table["class_name"]) <= {"<111> loop", "black dot"}
    # edges="exclude": edge objects are listed but not counted
    assert table["counted"].sum() == res.row["n_objects"] == (~table["touches_edge"]).sum()
    assert prov["model"]["weights_sha256"] == recipe.model["weights_sha256"]
    record = json.loads(paths["record"].read_text())
    assert record["recipe_hash"] == recipe.recipe_hash() and record["status"] == "ok"
    # a second call finds the outputs and skips; --overwrite redoes
    mtime = paths["labels"].stat().st_mtime_ns
    again = process_image(recipe, img, out)
    assert again.status == "skipped" and paths["labels"].stat().st_mtime_ns == mtime
    assert again.row == res.row
    assert process_image(recipe, img, out, overwrite=True).status == "ok"
    # another recipe is not "done"
    recipe.postprocess.min_size = 5.0
    assert process_image(recipe, img, out).status == "ok"


def test_bad_images_become_error_records(recipe, tmp_path):
    bad = write_corrupt(tmp_path / "broken.tif")
    (tmp_path / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    for path, words in (
        (bad, "broken.tif"),
        (tmp_path / "notes.txt", "unsupported format"),
        (tmp_path / "gone.tif", "No such file"),
    ):
        res = process_image(recipe, path, out)
        assert res.status == "error" and words in res.error
        assert json.loads(output_paths(out, path.stem)["record"].read_text())["status"] == "error"
    # an uncalibrated image is refused under policy "require", measured in px otherwise
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.full((64, 64), 100, np.uint8))
    recipe.pixel_size = PixelSizePolicy("require")
    res = process_image(recipe, tmp_path / "plain.tif", out)
    assert res.status == "error" and "requires calibrated" in res.error
    recipe.pixel_size = PixelSizePolicy("override", 2.0)
    res = process_image(recipe, tmp_path / "plain.tif", out)
    assert res.status == "ok" and res.row["pixel_size_nm"] == 2.0


def test_missing_or_changed_model_stops_the_run(recipe, tmp_path):
    write_micrographs(tmp_path / "in", 1, size=64)
    d = recipe.to_dict()
    d["model"]["name"] = "no-such-model"
    with pytest.raises(ModelError, match="No model named 'no-such-model'"):
        run_batch(Recipe.from_dict(d), [tmp_path / "in"], tmp_path / "out", workers=0)
    d = recipe.to_dict()
    d["model"]["weights_sha256"] = "0" * 64
    with pytest.raises(ModelError, match="changed since the recipe was saved"):
        run_batch(Recipe.from_dict(d), [tmp_path / "in"], tmp_path / "out", workers=0)


def test_inputs_names_and_serial_run(recipe, tmp_path):
    a = write_micrographs(tmp_path / "a", 2, size=96)
    b = write_micrographs(tmp_path / "b", 1, size=96)
    write_corrupt(tmp_path / "a" / "zz_bad.tif")
    paths = collect_inputs([tmp_path / "a", str(tmp_path / "b" / "*.tif"), a[0]])
    assert [p.name for p in paths] == ["img00.tif", "img01.tif", "zz_bad.tif", "img00.tif"]
    names = output_names(paths)
    assert len(set(names)) == 4 and names[1] == "img01" and names[0].startswith("img00-")
    with pytest.raises(Exception, match="No such file"):
        collect_inputs([tmp_path / "nothing-*.tif"])
    seen = []
    run = run_batch(
        recipe,
        [tmp_path / "a", b[0]],
        tmp_path / "out",
        workers=0,
        progress=lambda done, total, res: seen.append((done, total, res.status)),
    )
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert run.count("ok") == 3 and [r.image for r in run.failed] == [
        str(tmp_path / "a" / "zz_bad.tif")
    ]
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary["status"]) == ["ok", "ok", "error", "ok"]
    html = run.report.read_text()
    assert "zz_bad.tif" in html and recipe.recipe_hash() in html and "Failed images (1)" in html


def test_cancel_keeps_finished_images(recipe, tmp_path):
    write_micrographs(tmp_path / "in", 3, size=64)
    seen = []
    run = run_batch(
        recipe,
        [tmp_path / "in"],
        tmp_path / "out",
        workers=0,
        progress=lambda done, total, res: seen.append(done),
        cancel=lambda: len(seen) >= 1,
    )
    assert run.info["cancelled"] and [r.status for r in run.results] == ["ok"]
    assert "cancelled before every image was done" in run.report.read_text()
    run = run_batch(recipe, [tmp_path / "in"], tmp_path / "out", workers=0)
    assert [r.status for r in run.results] == ["skipped", "ok", "ok"] and not run.info["cancelled"]


def test_rerun_removes_half_written_files_of_a_killed_run(recipe, tmp_path):
    import os

    from napari_microseg.core.atomic import atomic_path

    write_micrographs(tmp_path / "in", 1, size=64)
    out = tmp_path / "out"
    out.mkdir()
    # what a process killed inside atomic_path leaves behind
    with pytest.raises(KeyboardInterrupt), atomic_path(out / "img00_objects.csv") as tmp:
        tmp.write_text("half")
        leftover = out / ".img00_objects.csv.abcd1234.part.csv"
        os.link(tmp, leftover)
        raise KeyboardInterrupt
    keep = out / ".notes.txt"  # a hidden file of the user's: not ours
    keep.write_text("mine")
    past = leftover.stat().st_mtime - 60
    os.utime(leftover, (past, past))
    run = run_batch(recipe, [tmp_path / "in"], out, workers=0)
    assert not leftover.exists() and keep.exists()
    assert run.info["removed_partial_files"] == 1 and run.count("ok") == 1
