"""FLOP accounting against hand counts."""

import pytest

from moon.config import RunConfig
from moon.cost import forward_flops, layer_macs, training_flops_per_image
from moon.architectures import build_model


def test_lenet5_and_mlp_macs_match_hand_counts():
    lenet = layer_macs(build_model("lenet5", 10, 1, 28), (1, 28, 28))
    assert list(lenet.values()) == [6 * 25 * 28 * 28, 16 * 6 * 25 * 10 * 10, 400 * 120, 120 * 84,
                                    84 * 10]
    mlp = layer_macs(build_model("mlp", 10, 1, 28), (1, 28, 28))
    assert sum(mlp.values()) == 784 * 300 + 300 * 100 + 100 * 10
    assert forward_flops(mlp, {n: 0.5 for n in mlp}) == pytest.approx(sum(mlp.values()))


def test_training_flops_follow_the_rigl_accounting():
    dense = training_flops_per_image(RunConfig(method="dense", density=1.0, unknown_class=False))
    assert dense["train_step"] == 3 * dense["forward_dense"]
    static = training_flops_per_image(RunConfig(method="static", density=0.1))
    rigl = training_flops_per_image(RunConfig(method="rigl", density=0.1, update_interval=100))
    f_s, f_d = static["forward_sparse"], static["forward_dense"]
    assert static["train_step"] == pytest.approx(3 * f_s)
    assert rigl["train_step"] == pytest.approx((300 * f_s + 2 * f_s + f_d) / 101)
    assert f_s < f_d   # ERK keeps the tiny first conv, which dominates the FLOPs, nearly dense


def test_train_sparse_table_shows_every_row_with_its_ratio_and_range():
    from moon.report.tables import train_sparse_table

    row = {"width": "1024", "density": 0.05, "threads": 1,
           "images_per_second": {"masked": 2544.2, "csr": 7406.0},
           "csr/masked": {"median": 2.912, "min": 2.79, "max": 3.531}}
    table = train_sparse_table({"rows": [row, {**row, "threads": 2}]})
    assert len(table) == 2
    assert table.iloc[0]["CSR / masked"] == "2.91x [2.79, 3.53]"
    assert table.iloc[0]["masked (images/s)"] == "2,544"
