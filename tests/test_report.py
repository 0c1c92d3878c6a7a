"""Reports: one row per group of seeds, mean ± std, and the three plots."""

import csv

from conftest import tiny_config

from fedras_flwr.tooling.inprocess import run_inprocess
from fedras_flwr.tooling.report import build_report


def test_report_groups_seeds_and_draws_plots(tmp_path):
    for codec in ("fedras", "dense"):
        for seed in (0, 1):
            run_inprocess(tiny_config(tmp_path, codec=codec, seed=seed, hetero="mixed", num_server_rounds=2,
                                      out_dir=str(tmp_path / "runs" / f"{codec}-{seed}")))
    message = build_report([str(tmp_path / "runs")], tmp_path / "report")
    assert "4 runs in 2 groups" in message and "3 plots" in message
    rows = list(csv.DictReader(open(tmp_path / "report" / "results.csv")))
    assert sorted(r["group"] for r in rows) == ["codec=dense", "codec=fedras"]
    assert all(r["seeds"] == "2" and "±" in r["final hr@10"] for r in rows)
    for name in ("hr_vs_round.png", "hr_vs_upload.png", "hr_vs_sim_time.png"):
        assert (tmp_path / "report" / name).stat().st_size > 10_000
    assert "groups differ in: codec" in (tmp_path / "report" / "results.md").read_text()


def test_the_shared_legend_names_what_any_panel_drew_once():
    """A codec that cannot reach one dataset's levels is drawn in the other panel only: it must stay in the legend."""
    import matplotlib.pyplot as plt

    from fedras_flwr.tooling.report import legend_handles

    figure, axes = plt.subplots(1, 2)
    axes[0].plot([1, 2], [1, 2], label="fedras")
    axes[0].plot([1, 2], [2, 1], label="quant")
    axes[1].plot([1, 2], [1, 2], label="fedras")
    axes[1].plot([1, 2], [1, 1], label="topk")
    assert list(legend_handles(axes)) == ["fedras", "quant", "topk"]
    assert legend_handles(axes)["fedras"] is axes[0].get_legend_handles_labels()[0][0]
    plt.close(figure)


def test_the_panels_share_one_legend_of_every_label(tmp_path, monkeypatch):
    """hr_vs_upload_panels puts the union of the panels' labels in the last panel's legend."""
    import matplotlib.pyplot as plt

    from fedras_flwr.tooling import report

    kept = []
    monkeypatch.setattr(report.plt, "close", kept.append)  # keep the figure to read its legend

    def draw(axis, dataset):
        for label in {"a": ("fedras", "quant"), "b": ("fedras", "topk")}[dataset]:
            axis.plot([1, 10], [0.5, 0.6], label=label)

    report.hr_vs_upload_panels(["a", "b"], draw, tmp_path / "panels.png")
    assert (tmp_path / "panels.png").is_file()
    assert [text.get_text() for text in kept[0].axes[-1].get_legend().get_texts()] == ["fedras", "quant", "topk"]
    monkeypatch.undo()
    plt.close(kept[0])
