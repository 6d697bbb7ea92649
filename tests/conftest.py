"""Shared fixtures: small networks and device variants for fast tests."""

from __future__ import annotations

import pytest

from perfmodel.graph import NetworkBuilder
from perfmodel.hardware import load_hardware


def small_cnn():
    """A small CNN with batchnorm, a residual add, pooling, dense and a loss."""
    b = NetworkBuilder("small-cnn")
    b.input("x", shape=[3, 32, 32])
    b.conv2d("c1", out_channels=16, kernel=3, padding=1, bias=False)
    b.batchnorm("bn1")
    b.relu("r1")
    b.conv2d("c2", out_channels=16, kernel=3, padding=1)
    b.relu("r2")
    b.add("res", inputs=["r2", "r1"])
    b.maxpool2d("p", kernel=2)
    b.flatten("f")
    b.dense("fc", units=10)
    b.softmax_cross_entropy("loss")
    return b.build()


def small_mlp(features: int = 256, hidden: int = 512, classes: int = 10, name: str = "small-mlp"):
    """input -> dense(hidden) -> relu -> dense(classes) -> softmax cross-entropy."""
    b = NetworkBuilder(name)
    b.input("x", shape=[features])
    b.dense("fc1", units=hidden)
    b.relu("r1")
    b.dense("fc2", units=classes)
    b.softmax_cross_entropy("loss")
    return b.build()


@pytest.fixture
def cnn():
    return small_cnn()


@pytest.fixture
def mlp():
    return small_mlp()


@pytest.fixture
def v100():
    return load_hardware("v100-sxm2")


@pytest.fixture
def cpu():
    return load_hardware("i7-3820")
