"""The validation's analysis: rank correlations, a calibrated score, the ablation by truth, plots and report.md.

Every sentence with a figure in the report is built here from runs.csv and baselines.csv.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..util.io import save_figure, write_csv, write_text
from .measures import TRUTH_COLUMNS

FAIR = ("quality_score", "style_distance", "content_distance")
TRACKS = 0.7  # the bar: a score "tracks the truth" at Spearman rho >= 0.7 with truth_score


def spearman_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho (and p) of each fair measure and the final loss against each truth measure."""
    from scipy.stats import spearmanr

    rows = []
    for fair in (*FAIR, "final_loss"):
        row: dict[str, Any] = {"measure": fair}
        for truth in TRUTH_COLUMNS:
            rho, p = spearmanr(frame[fair], frame[truth])
            row[f"rho vs {truth}"] = f"{rho:+.3f} (p {p:.1g})"
            row[f"_{truth}"] = rho
        rows.append(row)
    return pd.DataFrame(rows)


def calibrate(frame: pd.DataFrame, pair_names: list[str]) -> dict[str, Any]:
    """Fit truth_score ~ a + b style_distance + c content_distance + d spectral_convergence by least squares on
    the runs of half the pairs (even positions in the corpus) and measure Spearman rho on the other half."""
    from scipy.stats import spearmanr

    features = ["style_distance", "content_distance", "spectral_convergence"]
    train_pairs = set(pair_names[0::2])
    train = frame[frame["pair"].isin(train_pairs)]
    test = frame[~frame["pair"].isin(train_pairs)]
    if len(train) < len(features) + 2 or len(test) < 3:
        return {"ok": False, "reason": f"too few runs to split ({len(train)} train, {len(test)} held out)"}

    def design(part: pd.DataFrame) -> np.ndarray:
        return np.column_stack([np.ones(len(part)), part[features].to_numpy(dtype=float)])

    coef, *_ = np.linalg.lstsq(design(train), train["truth_score"].to_numpy(dtype=float), rcond=None)
    predicted = design(test) @ coef
    return {"ok": True, "features": features, "coef": coef, "train_runs": len(train), "test_runs": len(test),
            "rho_calibrated": float(spearmanr(predicted, test["truth_score"])[0]),
            "rho_quality": float(spearmanr(test["quality_score"], test["truth_score"])[0])}


def seed_means(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Ablation runs averaged over pairs: one row per (activation, weights, seed)."""
    return frame.groupby(["activation", "label", "seed"], as_index=False)[columns].mean()


def ablation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds (each seed first averaged over the ablation's pairs) per activation and weights."""
    columns = ["truth_score", "truth_timbre", "truth_notes", "quality_score"]
    per_seed = seed_means(frame, columns)
    grouped = per_seed.groupby(["activation", "label"])
    out = grouped[columns].agg(lambda s: f"{s.mean():.3f} ± {s.std(ddof=1) if len(s) > 1 else float('nan'):.3f}")
    return out.reset_index().rename(columns={"label": "weights"})


def compare(per_seed: pd.DataFrame, by: str, column: str) -> tuple[str, str]:
    """Which level of `by` scores lowest on `column` (seeds as the spread), as a sentence and the winner."""
    stats = per_seed.groupby(by)[column].agg(["mean", "std"]).sort_values("mean")
    best, second = stats.index[0], stats.index[1]
    gap = stats.loc[second, "mean"] - stats.loc[best, "mean"]
    spread = stats.loc[best, "std"] + stats.loc[second, "std"]
    listing = ", ".join(f"{k} {v['mean']:.3f} ± {v['std']:.3f}" for k, v in stats.iterrows())
    if not np.isfinite(spread):
        return f"{listing}: one seed only, so no spread to judge by", "undecided"
    if gap <= spread:
        return (f"no measurable difference: the best, {best}, leads {second} by {gap:.3f}, within the seed spread "
                f"({spread:.3f} = the two stds added); {listing}", "none")
    return f"{best} (ahead of {second} by {gap:.3f}, more than the seed spread {spread:.3f}); {listing}", str(best)


def plot_scatter(frame: pd.DataFrame, rho: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    truths = ["truth_timbre", "truth_notes", "truth_score"]
    fig, axes = plt.subplots(len(FAIR), len(truths), figsize=(4 * len(truths), 3.4 * len(FAIR)), squeeze=False)
    for i, fair in enumerate(FAIR):
        for j, truth in enumerate(truths):
            ax = axes[i][j]
            for activation, part in frame.groupby("activation"):
                ax.scatter(part[truth], part[fair], s=12, alpha=0.7, label=activation)
            value = rho.set_index("measure").loc[fair, f"_{truth}"]
            ax.set_title(f"{fair} vs {truth}: Spearman rho {value:+.2f}", fontsize=9)
            ax.set_xlabel(f"{truth} (0 = oracle, unitless)")
            ax.set_ylabel(f"{fair} (unitless, lower is better)")
    axes[0][0].legend(title="activation", fontsize=7)
    fig.suptitle(f"Fair measures against the ground truth, {len(frame)} transfers on the rendered corpus")
    fig.tight_layout()
    save_figure(fig, path)


def plot_baselines(baselines: pd.DataFrame, transfers: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    rendered = baselines[baselines["corpus"] == "rendered"]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(transfers["truth_timbre"], transfers["truth_notes"], s=10, alpha=0.5, color="grey",
               label=f"transfers ({len(transfers)})")
    for name, part in rendered.groupby("baseline"):
        ax.scatter(part["truth_timbre"].mean(), part["truth_notes"].mean(), s=60, marker="D", label=name)
    ax.set_xlabel("truth_timbre (0 = the target's instrument, 1 = the content's)")
    ax.set_ylabel("truth_notes (0 = the target's notes, 1 = as far as the style song)")
    ax.set_title("Transfers and baselines (baselines: mean over the rendered pairs)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def baseline_table(baselines: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in (*FAIR, *TRUTH_COLUMNS) if c in baselines and baselines[c].notna().any()]
    table = baselines.groupby(["corpus", "baseline"], sort=False)[columns].mean().round(3).reset_index()
    table.insert(2, "pairs", baselines.groupby(["corpus", "baseline"], sort=False).size().to_numpy())
    return table


def beats(transfers: pd.DataFrame, baselines: pd.DataFrame, baseline: str, column: str) -> str:
    """How many transfers score below their own pair's baseline on `column`."""
    ref = baselines[(baselines["corpus"] == "rendered") & (baselines["baseline"] == baseline)].set_index("pair")[column]
    joined = transfers["pair"].map(ref)
    wins = int((transfers[column] < joined).sum())
    return f"{wins} of {len(transfers)} transfers score below their pair's {baseline} on {column}"


def objective_sentence(q_rho: float, calibration: dict[str, Any]) -> str:
    """The sweep objective the rank correlations support, as a sentence built from them."""
    held_out = calibration.get("rho_calibrated", float("nan")) if calibration["ok"] else float("nan")
    if q_rho >= TRACKS:
        return (f"quality_score tracks the truth (rho {q_rho:+.3f} >= {TRACKS}): it can stay the default objective, "
                "and `truth` confirms it on the rendered corpus.")
    if np.isfinite(held_out) and held_out >= TRACKS:
        return (f"quality_score does not (rho {q_rho:+.3f}), but the calibrated score does on held-out pairs "
                f"(rho {held_out:+.3f}): it is the supported objective for corpora without targets.")
    return (f"Neither quality_score (rho {q_rho:+.3f} with truth_score over all runs) nor the calibrated score "
            f"(held-out rho {held_out:+.3f}) reaches {TRACKS}. The only objective this validation supports is the "
            "truth itself: `truth_score` on the rendered corpus (`--corpus rendered --objective truth`). On corpora "
            "without targets no measured score is validated; quality_score remains a fallback whose ranking is "
            "weakly related to transfer quality.")


def write_report(out_dir: Path, runs: pd.DataFrame, baselines: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """report.md, validation.csv, ablation.csv and the plots, all from `runs` and `baselines`."""
    ok = runs[runs["state"] == "ok"].copy()
    failed = len(runs) - len(ok)
    rho = spearman_table(ok)
    write_csv(out_dir / "validation.csv", rho[[c for c in rho if c.startswith("_") or c == "measure"]]
              .rename(columns=lambda c: c.lstrip("_")))
    plot_scatter(ok, rho, out_dir / "validation_scatter.png")
    plot_baselines(baselines, ok, out_dir / "baselines.png")
    ablation = ok[ok["group"] == "ablation"]
    table = ablation_table(ablation)
    write_csv(out_dir / "ablation.csv", table)
    q_rho = float(rho.set_index("measure").loc["quality_score", "_truth_score"])
    calibration = calibrate(ok, meta["pair_names"])
    per_seed = seed_means(ablation, ["truth_score", "quality_score"])
    lines = [
        "# Ground truth: the fair measures validated on a rendered corpus", "",
        f"Generated by `{meta['command']}` at code version {meta['commit']}. Machine: {meta['machine']}. "
        f"Precision used: {meta['precision']} (device {meta['device']}).", "",
        *[f"Wall time per phase, invocation {i + 1} of {len(meta['phases'])}: "
          + ", ".join(f"{k} {v / 60:.1f} min" if k != "transfer processes" else f"{k} {v:g}"
                      for k, v in phases.items()) + "." for i, phases in
          enumerate(meta["phases"])], "",
        f"Corpus: {len(meta['pair_names'])} rendered pairs ({meta['corpus_summary']}). Run settings shared by every "
        f"run: {meta['fixed']}; the rest are TransferConfig's defaults (L-BFGS, kernel width 11, gain sqrt(2)).", "",
        "Measures (docs/truth.md has the formulas; each passes its sanity suite, sanity.md): `truth_timbre` (the "
        "timbre model's odds of the target's instrument against the content's: 0 the target's, 1 the content's), "
        "`truth_notes` (the pitch classes Basic Pitch hears, against the score: 0 the target's notes, 1 as far as "
        "the style song), "
        "`truth_score` (minus the margin over the pair's trivial frontier: below 0 beats every trivial output). "
        "All lower is better; `truth_lsd_db` and `truth_artefacts_db` are reported beside them.", "",
        "## Baselines", "",
        "Mean over each corpus's pairs. Truth measures only where a target exists (the rendered corpus).", "",
        baseline_table(baselines).to_markdown(index=False), "",
        *[f"- {note}" for note in meta["notes"]],
        f"- Transfers on the rendered corpus ({len(ok)}, both designs): truth_score "
        f"{ok['truth_score'].mean():.3f} ± {ok['truth_score'].std():.3f}, quality_score "
        f"{ok['quality_score'].mean():.3f} ± {ok['quality_score'].std():.3f}; best truth_score "
        f"{ok['truth_score'].min():.3f}.",
        f"- {beats(ok, baselines, 'waveform mix w=0.5', 'truth_score')}; "
        f"{beats(ok, baselines, 'magnitude mix', 'truth_score')}; "
        f"{beats(ok, baselines, 'content copy', 'truth_timbre')}.", "",
        "![baselines and transfers](baselines.png)", "",
        f"## Validation: Spearman rho over {len(ok)} transfers ({failed} failed; {meta['planned']} planned)", "",
        f"{(ok['group'] == 'random').sum()} runs drawn across the search space ({meta['search']}; one pair "
        f"each, cycling through the corpus) and "
        f"{(ok['group'] == 'ablation').sum()} ablation runs. Both sides are lower-is-better, so a positive rho "
        "means the fair measure ranks transfers as the truth does.", "",
        rho[[c for c in rho if not c.startswith("_")]].to_markdown(index=False), "",
        "![scatter](validation_scatter.png)", "",
    ]
    if q_rho < TRACKS:
        lines += [f"**The fair quality score does not track the truth: rho {q_rho:+.3f} with truth_score, below "
                  f"{TRACKS}.** It should not be the sweep's objective on its own.", ""]
    else:
        lines += [f"The fair quality score tracks the truth: rho {q_rho:+.3f} with truth_score (bar {TRACKS}).", ""]
    lines += ["## A calibrated score", ""]
    if calibration["ok"]:
        c = calibration["coef"]
        lines += [
            f"Fitted on the runs of half the pairs ({calibration['train_runs']} runs), checked on the other half "
            f"({calibration['test_runs']} runs): calibrated = {c[0]:+.3f} {c[1]:+.3f} style_distance "
            f"{c[2]:+.3f} content_distance {c[3]:+.3f} spectral_convergence. Held-out Spearman rho with truth_score: "
            f"calibrated {calibration['rho_calibrated']:+.3f}, quality_score {calibration['rho_quality']:+.3f}.", ""]
    else:
        lines += [f"Not fitted: {calibration['reason']}.", ""]
    lines += ["## Which objective the validation supports", "", objective_sentence(q_rho, calibration), ""]
    lines += ["## The paper's four rows and the activation x weights ablation, by the truth", "",
              f"Each cell: mean ± std over {ablation['seed'].nunique()} seeds, each seed first averaged over "
              f"{ablation['pair'].nunique()} pairs; {meta['ablation']}. The paper's rows are relu with the paper's "
              "weights and leaky_relu / elu / selu with the blog's.", "", table.to_markdown(index=False), ""]
    if len(per_seed):
        by_act_truth = per_seed.groupby(["activation", "seed"], as_index=False).mean(numeric_only=True)
        by_w = per_seed.groupby(["label", "seed"], as_index=False).mean(numeric_only=True)
        answers = {}
        for name, data, by in (("activation", by_act_truth, "activation"), ("weights", by_w, "label")):
            for column in ("truth_score", "quality_score"):
                answers[(name, column)] = compare(data, by, column)
        for name in ("activation", "weights"):
            truth_text, truth_best = answers[(name, "truth_score")]
            fair_text, fair_best = answers[(name, "quality_score")]
            agree = "the same answer" if truth_best == fair_best else "a different answer"
            lines += [f"- Which {name} give{'s' if name == 'activation' else ''} better transfers, by truth_score: "
                      f"{truth_text}.",
                      f"- By the fair quality_score: {fair_text}. The fair score gives {agree}.", ""]
    lines += ["## Files", "", "- [runs.csv](runs.csv): every transfer, its settings, final loss, fair and truth "
              "measures and time", "- [baselines.csv](baselines.csv): every baseline on every pair",
              "- [validation.csv](validation.csv): the rho table", "- [ablation.csv](ablation.csv): the ablation "
              "table", ""]
    path = out_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path
