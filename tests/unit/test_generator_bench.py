"""`gapstream bench generator` runs and prints figures (not a timing assertion: ratios are reported, not tested)."""

from __future__ import annotations

import json

from click.testing import CliRunner

import pytest

from cli.main import cli, main

KEYS = {"images_per_s_sequential", "images_per_s_batched", "speedup", "seconds_sequential", "seconds_batched",
        "jobs", "width_px", "height_px", "steps", "max_batch_images", "model", "device"}


def test_bench_generator_json_prints_one_object_with_unit_named_keys(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "generator", "--json", "-n", "3", "--repeats", "1",
                                      "--max-batch", "2"], env={"GAPSTREAM_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert KEYS <= set(figures)
    assert (figures["jobs"], figures["width_px"], figures["max_batch_images"]) == (3, 64, 2)
    assert figures["model"] == "gapstream/tiny-random-sd"
    for mode in ("sequential", "batched"):
        assert figures[f"seconds_{mode}"] > 0
        assert abs(figures[f"images_per_s_{mode}"] - 3 / figures[f"seconds_{mode}"]) < 0.05 * figures[
            f"images_per_s_{mode}"] + 0.01
    assert abs(figures["speedup"] - figures["seconds_sequential"] / figures["seconds_batched"]) < 0.01


def test_bench_generator_text_and_bad_options(tmp_path, monkeypatch, capsys):
    env = {"GAPSTREAM_HOME": str(tmp_path)}
    text = CliRunner().invoke(cli, ["bench", "generator", "-n", "2", "--repeats", "1", "--size", "32"], env=env)
    assert text.exit_code == 0, text.output
    assert "images/s" in text.output and "speedup" in text.output and "32x32" in text.output
    bad = CliRunner().invoke(cli, ["bench", "generator", "--size", "30"], env=env)
    assert bad.exit_code == 2 and "multiple of 8" in bad.output
    monkeypatch.setenv("GAPSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("GAPSTREAM_MAX_BATCH", "lots")
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "generator"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "GAPSTREAM_MAX_BATCH must be an integer" in err and "Traceback" not in err
