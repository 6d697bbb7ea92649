"""`perfmodel import`: the README's example, keyword inputs, the JSON report and one-paragraph errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from perfmodel.cli import app  # noqa: E402
from perfmodel.graph import load_network  # noqa: E402

pytestmark = pytest.mark.torch


def run(*argv):
    r = CliRunner().invoke(app, list(argv))
    return r.exit_code, r.output


def test_readme_example_writes_the_network(tmp_path):
    out = tmp_path / "cnn.yaml"
    code, text = run("import", "tests.import_corpus:depthwise_cnn", "--input-shape", "3x32x32", "--out", str(out))
    assert code == 0, text
    assert "tracing with fx ..." in text  # the progress line
    assert "parameters: module 4,394, graph 4,394 (equal)" in text
    g = load_network(out)
    assert g.inputs[0].output_shape == (3, 32, 32) and g["classifier"].op == "dense"
    assert g["features.2"].op == "elementwise" and g["features.2"].spec.fn == "relu6"


def test_file_path_factory_batch_position_and_json(tmp_path):
    code, text = run("import", "tests/import_corpus.py:lstm_lm", "--input-shape", "35xB:int64", "--batch", "4",
                     "--name", "lm", "--json")
    assert code == 0, text
    rep = json.loads(text[text.index("{"):])
    assert rep["tracer"] == "fx" and rep["name"] == "lm" and rep["batch"] == 4 and rep["params_match"]
    assert rep["kinds"]["lstm"] == 1 and rep["custom"] == [] and rep["out"] is None
    rnn = next(r for r in rep["layer_table"] if r["name"] == "rnn")
    assert rnn == {"name": "rnn", "op": "lstm", "output_shape": [35, 32], "params": 15872}


def test_keyword_inputs_of_a_transformers_model(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "bert.json"
    code, text = run("import", "tests.import_corpus:hf_bert", "--input", "input_ids=16:int64",
                     "--input", "attention_mask=16:int64", "--out", str(out))
    assert code == 0, text
    g = load_network(out)
    assert {l.name for l in g.inputs} == {"input_ids", "attention_mask"}
    assert g["encoder.layer.0.attention.self.query"].op == "dense"


@pytest.mark.parametrize("argv, words", [
    (["tests.import_corpus:dcgan_generator"], ["forward(z)", "0 positional", "--input-shape"]),
    (["tests.import_corpus:dcgan_generator", "--input-shape", "16x1x1", "--input-shape", "4"], ["2 positional"]),
    (["tests.import_corpus:nope"], ["has no 'nope'", "dcgan_generator"]),
    (["no_such_module_xyz:f"], ["module 'no_such_module_xyz' not found"]),
    (["missing/models.py:f"], ["model file 'missing/models.py' not found"]),
    (["tests.import_corpus"], ["MODULE:FACTORY"]),
    (["tests.import_corpus:unet", "--input-shape", "3xAx4"], ["per-sample shape"]),
    (["tests.import_corpus:unet", "--input-shape", "4x32x32"], ["fails on these example inputs", "4 channels"]),
    (["tests.import_corpus:unet", "--input", "3x32x32"], ["--input '3x32x32'", "NAME=SHAPE"]),
    (["tests.import_corpus:unet", "--input-shape", "3x32x32:complex"], ["dtype must be one of"]),
])
def test_errors_are_one_paragraph(argv, words):
    code, text = run("import", *argv)
    assert code == 2 and text.startswith("error: ") and "Traceback" not in text, text
    assert text.strip().count("\n") == 0 and all(w in text for w in words), text


def test_without_torch_the_command_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    code, text = run("import", "tests.import_corpus:unet", "--input-shape", "3x32x32")
    assert code == 2 and text.startswith("error: perfmodel import needs PyTorch") and "perfmodel[torch]" in text


def test_a_model_file_imports_its_neighbours(tmp_path):
    (tmp_path / "blocks.py").write_text("from torch import nn\n\n\ndef mlp():\n"
                                        "    return nn.Sequential(nn.Linear(8, 16), nn.ReLU6(), nn.Linear(16, 2))\n")
    (tmp_path / "model.py").write_text("from blocks import mlp\n\n\ndef build():\n    return mlp()\n")
    code, text = run("import", f"{tmp_path / 'model.py'}:build", "--input-shape", "8")
    assert code == 0, text
    assert "parameters: module 178, graph 178 (equal)" in text and "dense 2, elementwise 1, input 1" in text
