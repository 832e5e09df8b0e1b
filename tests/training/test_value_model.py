"""training.value: protocol labels and windows, metrics, ONNX parity, the CDNOW benchmark."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.contract.features import SECONDS_PER_DAY
from services.contract.value_features import N_VALUE_FEATURES, VALUE_FEATURE_NAMES
from training.data.schema import make_events
from training.value.export import OUTPUT_NAMES, export_value_model, parity_max_abs_error
from training.value.metrics import auc, top_decile_capture
from training.value.model import ValueNet
from training.value.protocol import (
    CDNOW_PROTOCOL,
    active_by,
    customer_days,
    training_windows,
    window_labels,
)

AGE = VALUE_FEATURE_NAMES.index("log_t_weeks")
CDNOW_DIR = Path(__file__).resolve().parents[2] / "data" / "cdnow"


def tiny_log():
    # user a: days 10, 10 (two events, one transaction), 20, 35; user b: day 30; user c: day 41.
    rows = [
        ("a", 10, 5.0),
        ("a", 10, 7.0),
        ("a", 20, 3.0),
        ("a", 35, 4.0),
        ("b", 30, 9.0),
        ("c", 41, 2.0),
    ]
    users, days, values = zip(*rows, strict=True)
    ts = np.array(days) * SECONDS_PER_DAY + 3600
    return customer_days(make_events(users, ["cd"] * len(rows), ts, value=np.array(values)))


def test_one_customer_day_is_one_transaction():
    data = tiny_log()
    assert list(data.user_ids) == ["a", "b", "c"]
    a = data.owner == 0
    np.testing.assert_array_equal(data.days[a], [10, 20, 35])
    np.testing.assert_allclose(data.values[a], [12.0, 3.0, 4.0])


def test_window_labels_count_days_after_the_cut_off_up_to_the_horizon():
    labels = window_labels(tiny_log(), cut_off_day=20, horizon_weeks=2)  # days 21..34
    np.testing.assert_array_equal(labels.transactions, [0, 1, 0])
    np.testing.assert_allclose(labels.spend, [0.0, 9.0, 0.0])
    labels = window_labels(tiny_log(), cut_off_day=20, horizon_weeks=3)  # days 21..41
    np.testing.assert_array_equal(labels.transactions, [1, 1, 1])
    np.testing.assert_array_equal(labels.any_purchase, [1, 1, 1])


def test_only_customers_active_by_the_cut_off_are_customers():
    np.testing.assert_array_equal(active_by(tiny_log(), 30), [True, True, False])


def test_training_windows_never_reach_into_the_holdout():
    protocol = CDNOW_PROTOCOL
    windows = training_windows(protocol)
    assert len({h for _, h in windows}) > 1
    for cut_off, horizon in windows:
        assert protocol.calibration_start_day < cut_off
        assert cut_off + 7 * horizon <= protocol.as_of_day


def test_cdnow_protocol_is_39_plus_39_weeks():
    p = CDNOW_PROTOCOL
    assert p.describe()["calibration"] == "1997-01-01..1997-09-30"
    assert p.describe()["holdout"] == "1997-10-01..1998-06-30"
    assert p.calibration_weeks == 39 and p.horizon_weeks == 39


def test_auc_and_top_decile_capture():
    assert auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    actual = np.r_[np.zeros(9), 10.0, np.ones(10)]  # customer 9 spends 10 of 20
    assert top_decile_capture(actual, actual) == pytest.approx(11 / 20)


def test_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(512, N_VALUE_FEATURES)
    net = ValueNet(
        x.mean(0), x.std(0), rate_scale=0.05, spend_scale=35.0, horizon_weeks=39, age_column=AGE
    )
    path = tmp_path / "user_value.onnx"
    export_value_model(net, path, N_VALUE_FEATURES)
    error = parity_max_abs_error(net, path, torch.randn(37, N_VALUE_FEATURES).numpy())
    assert error <= 1e-4
    import onnx

    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["features"]
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)


def test_exported_outputs_are_consistent():
    torch.manual_seed(1)
    x = torch.randn(64, N_VALUE_FEATURES)
    net = ValueNet(
        x.mean(0), x.std(0), rate_scale=0.05, spend_scale=35.0, horizon_weeks=39, age_column=AGE
    ).eval()
    p, n, v = net(x)
    assert ((p > 0) & (p < 1)).all() and (n > 0).all() and (v > 0).all()
    # P(any) can never exceed the expected count (Markov's inequality).
    assert (p <= n + 1e-6).all()


@pytest.mark.slow
@pytest.mark.skipif(not (CDNOW_DIR / "CDNOW_master.txt").is_file(), reason="run `make data`")
def test_cdnow_model_against_the_classical_models(tmp_path):
    from training.data import load_cdnow
    from training.value import build_value_model

    result = build_value_model(load_cdnow(CDNOW_DIR), tmp_path, progress=False)
    m = result.metrics
    model, baseline = m["model"], m["rate_baseline"]
    assert m["n_customers"] == 23_570
    assert result.onnx_path == tmp_path / "user_value.onnx" and result.onnx_path.is_file()
    # Ranking metrics beat both classical models (the targets are higher still).
    for classical in ("bg_nbd", "pareto_nbd"):
        for key in ("spend_spearman", "spend_top_decile_capture", "p_active_auc"):
            assert model[key] > m[classical][key], (classical, key)
    assert model["spend_mae"] < baseline["spend_mae"]
    repeat = m["spend_spearman_repeat_buyers"]
    assert repeat["model"] > repeat["rate_baseline"]
    # Honest training cannot see the holdout's seasonality: the total is low, but not -30%.
    assert -0.25 < model["spend_total_error"] < 0.05
    section = result.manifest_section
    assert section["horizon_weeks"] == 39 and section["unit"] == "USD"
    assert section["as_of_day"] == CDNOW_PROTOCOL.as_of_day
    assert section["parity_max_abs_error"] <= 1e-4
    assert section["net"]["members"] == 3


def _net(seed: int, x: torch.Tensor, floor: bool = False) -> ValueNet:
    torch.manual_seed(seed)
    return ValueNet(
        x.mean(0),
        x.std(0),
        rate_scale=0.05,
        spend_scale=35.0,
        horizon_weeks=39,
        age_column=AGE,
        floor=floor,
    ).eval()


def test_floor_share_keeps_the_rate_from_ageing():
    x = torch.randn(16, N_VALUE_FEATURES)
    net = _net(2, x, floor=True)
    process = net.parameters_of(x)
    assert ((process.floor > 0) & (process.floor < 1)).all()
    flat = process._replace(floor=torch.ones_like(process.floor))
    mu, _ = net.outcomes(flat, torch.tensor(10.0))
    torch.testing.assert_close(mu, process.rate * 10.0)
    aged = process._replace(floor=torch.zeros_like(process.floor))
    assert (net.outcomes(aged, torch.tensor(10.0))[0] < mu).all()


def test_ensemble_averages_its_members_and_exports(tmp_path):
    from training.value.model import ValueEnsemble

    x = torch.randn(64, N_VALUE_FEATURES)
    members = [_net(3, x), _net(4, x, floor=True)]
    ensemble = ValueEnsemble(members).eval()
    with torch.no_grad():
        got = ensemble(x)
        for k, output in enumerate(got):
            want = (members[0](x)[k] + members[1](x)[k]) / 2
            torch.testing.assert_close(output, want)
    path = tmp_path / "user_value.onnx"
    export_value_model(ensemble, path, N_VALUE_FEATURES)
    assert parity_max_abs_error(ensemble, path, x.numpy()) <= 1e-4


def test_net_config_rejects_unknown_decay_forms():
    from training.value.build import NetConfig

    assert NetConfig().members >= 1 and NetConfig().decay == "power"
    with pytest.raises(ValueError):
        NetConfig(decay="linear")
    with pytest.raises(ValueError):
        NetConfig(members=0)


def test_exponential_decay_integrates_the_rate():
    x = torch.randn(8, N_VALUE_FEATURES)
    torch.manual_seed(5)
    net = ValueNet(
        x.mean(0),
        x.std(0),
        rate_scale=0.05,
        spend_scale=35.0,
        horizon_weeks=39,
        age_column=AGE,
        exponential=True,
    ).eval()
    with torch.no_grad():
        process = net.parameters_of(x)
        mu, p = net.outcomes(process, torch.tensor(20.0))
    rate, decay = process.rate.double(), process.decay.double()
    want = rate * (1 - torch.exp(-decay * 20.0)) / decay
    torch.testing.assert_close(mu.double(), want, rtol=1e-4, atol=1e-6)
    assert ((p > 0) & (p <= mu + 1e-6)).all()


def test_in_sample_logistic_auc_separates_separable_labels():
    from training.value.ceiling import in_sample_logistic_auc

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 1))
    y = (z[:, 0] > 0).astype(float)
    design = np.c_[np.ones(200), z]
    assert in_sample_logistic_auc(design, y) == pytest.approx(1.0)
    assert in_sample_logistic_auc(design, rng.integers(0, 2, 200).astype(float)) < 0.65


@pytest.mark.parametrize("floor", [False, True])
def test_a_stacked_ensemble_is_the_ensemble_with_fewer_nodes(tmp_path, floor):
    """Members of one layout are exported stacked along a member axis: the same outputs as
    the ensemble (torch and ONNX Runtime), about a third of the graph's nodes for three."""
    import onnx

    from training.value.model import StackedEnsemble, ValueEnsemble

    x = torch.randn(64, N_VALUE_FEATURES) * 2
    members = [_net(seed, x, floor=floor) for seed in (3, 4, 5)]
    members[1].feature_mean += 0.1  # members may normalise differently
    ensemble = ValueEnsemble(members).eval()
    assert StackedEnsemble.stackable(ensemble)
    with torch.no_grad():
        for got, want in zip(StackedEnsemble(ensemble)(x), ensemble(x), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    stacked_path, plain_path = tmp_path / "stacked.onnx", tmp_path / "plain.onnx"
    export_value_model(ensemble, stacked_path, N_VALUE_FEATURES)
    assert parity_max_abs_error(ensemble, stacked_path, x.numpy()) <= 1e-4
    export_value_model(members[0], plain_path, N_VALUE_FEATURES)  # one member, not stacked
    stacked_nodes = len(onnx.load(str(stacked_path)).graph.node)
    member_nodes = len(onnx.load(str(plain_path)).graph.node)
    assert stacked_nodes < 2 * member_nodes  # vs about 3 x member_nodes unstacked


def test_members_of_different_layouts_are_not_stacked():
    from training.value.model import StackedEnsemble, ValueEnsemble

    x = torch.randn(8, N_VALUE_FEATURES)
    assert not StackedEnsemble.stackable(ValueEnsemble([_net(1, x), _net(2, x, floor=True)]))
    assert not StackedEnsemble.stackable(ValueEnsemble([_net(1, x)]))
