"""What an evaluation shows a person: the comparison table (scores, standard errors, paired deltas with 95%
intervals and, in words, which deltas are significant), MMLU per category and subject, and a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from platypus.fields import DELTA_KEYS
import platypus.stages.evaluate.stats as stats
from platypus.stages.evaluate.aggregate import AVERAGE, size_weighted_mean, subject_breakdown
from platypus.stages.evaluate.documents import outcomes
from platypus.stages.evaluate.tasks import Suite, subject_categories


def score_of(entry: Any) -> float | None:
    """A summary entry's score: the average (a number) or a task's ``{metric: value, "stderr": ...}``."""
    if entry is None or isinstance(entry, (int, float)):
        return entry
    return next(float(v) for k, v in entry.items() if k != "stderr")


def stderr_of(summary: Mapping[str, Any], column: str) -> float | None:
    entry = summary.get(column)
    return entry.get("stderr") if isinstance(entry, Mapping) else None


def delta_text(delta: Mapping[str, Any]) -> str:
    """``+0.0310 [-0.0040, +0.0660]``, starred when the interval excludes 0."""
    star = "*" if delta["significant"] else ""
    return f"{delta['value']:+.4f} [{delta['low']:+.4f}, {delta['high']:+.4f}]{star}"


def _cell(summary: Mapping[str, Any], column: str, is_reference: bool) -> str:
    value = score_of(summary.get(column))
    if value is None:
        return "–"
    error = stderr_of(summary, column)
    text = f"{value:.4f}" + (f" ± {error:.4f}" if error is not None else "")
    delta = (summary.get(DELTA) or {}).get(column)
    return text if is_reference or delta is None else f"{value:.4f} ({delta_text(delta)})"


DELTAS = DELTA_KEYS  # summary keys: vs the first model; the merged model vs the merge target
DELTA, DELTA_TARGET = DELTAS


NUMBERS = ("value", "low", "high", "p")  # of a delta, in a sweep summary's csv beside its text


def delta_columns(prefix: str, deltas: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``<prefix>/<task>``: "+0.0310 [-0.0040, +0.0660]*" (summary.md), and its numbers for the csv."""
    out: dict[str, Any] = {}
    for task, delta in deltas.items():
        out[f"{prefix}/{task}"] = delta_text(delta)
        out.update({f"{prefix}/{task}/{k}": delta[k] for k in NUMBERS})
    return out


def verdict(summary: Mapping[str, Any], columns: list[str]) -> list[str]:
    """One sentence per comparison naming the significant and the non-significant deltas, each also as the
    percentage change of the reference's score (the paper's tables)."""
    lines = []
    for label, entry in summary.items():
        for kind in DELTAS:
            deltas = entry.get(kind)
            if not deltas:
                continue
            reference = summary[deltas["reference"]]

            def said(c, d, digits):
                base = score_of(reference.get(c))
                change = f", {100 * d['value'] / base:+.1f}%" if base else ""
                return f"{c} ({d['value']:+.4f}{change}, p={d['p']:.{digits}f})"

            named = [(c, deltas[c]) for c in columns if c in deltas]
            sig = [said(c, d, 3) for c, d in named if d["significant"]]
            rest = [said(c, d, 2) for c, d in named if not d["significant"]]
            counts = ", ".join(f"{c} {d['n']:,}" for c, d in named if c != AVERAGE)
            lines.append(f"- **{label} vs {deltas['reference']}**: significant: {', '.join(sig) or 'none'}; "
                         f"not significant: {', '.join(rest) or 'none'} (paired documents: {counts}).")
    return lines


def published_table(published: Mapping[str, Any], summary: Mapping[str, Any], columns: list[str]) -> str:
    """The experiment's published numbers (percent) beside this run's final model (the last evaluated)."""
    label = list(summary)[-1]
    ours = {c: score_of(summary[label].get(c)) for c in columns}
    theirs = {**published.get("scores", {}), AVERAGE: published.get("average")}
    cell = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"Published vs ours: {published['model']} ({published['source']}; revision {published['card_revision']}) "
             f"vs this run's {label}", "",
             "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|",
             "| published | " + " | ".join(cell(theirs.get(c)) for c in columns) + " |",
             f"| ours ({label}) | " + " | ".join(cell(None if ours[c] is None else 100 * ours[c]) for c in columns) + " |",
             "| ours - published | " + " | ".join(
                 cell(None if ours[c] is None or theirs.get(c) is None else 100 * ours[c] - theirs[c])
                 for c in columns) + " |"]
    if published.get("note"):
        lines += ["", f"Note: {published['note']}"]
    return "\n".join(lines) + "\n"


def markdown_table(summary: Mapping[str, Any], subjects: Mapping[str, Any], eval_cfg: Mapping[str, Any]) -> str:
    """Model x benchmark (score ± lm-eval's standard error; other models: score (delta [95% interval]) vs the
    first), the verdict in words, then per MMLU category (with intervals) and subject."""
    labels = list(summary)
    reference = labels[0]
    columns = list(eval_cfg["tasks"]) + ([AVERAGE] if any(AVERAGE in s for s in summary.values()) else [])
    heads = [f"{key} {eval_cfg['tasks'][key]['metric']} ({eval_cfg['tasks'][key]['num_fewshot']}-shot)"
             if key in eval_cfg["tasks"] else "average" for key in columns]
    lines = [f"Evaluated on {eval_cfg.get('device', 'cpu')}.", "",
             "| model | " + " | ".join(heads) + " |", "|---" * (len(columns) + 1) + "|"]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(_cell(summary[label], c, label == reference) for c in columns) + " |")
        if summary[label].get(DELTA_TARGET):
            against = {**summary[label], DELTA: summary[label][DELTA_TARGET]}
            lines.append(f"| {label} vs {against[DELTA]['reference']} | "
                         + " | ".join(_cell(against, c, False) for c in columns) + " |")
    said = verdict(summary, columns)
    if said:
        also = " (and the merged model vs the merge target)" if any(DELTA_TARGET in v for v in summary.values()) else ""
        lines += ["", f"Deltas vs {reference}{also} on the same documents, with paired 95% bootstrap intervals "
                  f"({stats.RESAMPLES:,} resamples, seed {stats.SEED}); * = the interval excludes 0:", "", *said]
    for key, per_label in subjects.items():
        for part, noun in (("categories", "category"), ("subjects", "subject")):
            lines += ["", f"### {key} per {noun}", ""]
            lines += [f"| {noun} | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
            for name in per_label[reference][part]:
                cells = []
                for label in labels:
                    value, base = per_label[label][part].get(name), per_label[reference][part].get(name)
                    delta = per_label[label].get("category_deltas", {}).get(name) if part == "categories" else None
                    if value is None:
                        cells.append("–")
                    elif label == reference or base is None:
                        cells.append(f"{value:.4f}")
                    else:
                        cells.append(f"{value:.4f} ({delta_text(delta) if delta else f'{value - base:+.4f}'})")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def subject_results(suite: Suite, eval_cfg: Mapping[str, Any], benchmarks_cfg: Mapping[str, Any],
                    all_results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{task: {label: {"categories", "subjects", "weighted_by_size", "category_deltas"}}} for per-subject tasks
    (MMLU); category deltas vs the first model are paired and resampled within subjects."""
    out: dict[str, dict[str, Any]] = {}
    for key, task in suite.tasks.items():
        if not task.subjects:
            continue
        categories = subject_categories(task.benchmark, benchmarks_cfg["sets"][task.benchmark])
        metric_key = eval_cfg["tasks"][key]["lm_eval_metric"]
        out[key] = {}
        reference = None
        for label, res in all_results.items():
            lm_out = res["tasks"][key]
            breakdown = subject_breakdown(lm_out["results"], metric_key, task.subjects, categories)
            sizes = {name: int(n["effective"]) for name, n in lm_out["n-samples"].items()}
            breakdown["weighted_by_size"] = size_weighted_mean(lm_out["results"], metric_key, sizes)
            by_subject = outcomes(res["items"][key], metric_key.split(",")[0], rename=task.subjects)
            by_category = {c: {s: v for s, v in by_subject.items() if categories[s] == c} for c in breakdown["categories"]}
            if reference is None:
                reference = by_category
            else:
                deltas = stats.compare(reference, by_category)
                breakdown["category_deltas"] = {c: d.as_dict() for c, d in deltas.items()}
            out[key][label] = breakdown
    return out


def bar_chart(summary: Mapping[str, Any], path: Path) -> None:
    """Grouped bars: benchmarks (and the average) on x, one bar per model, error bars of one standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    columns = list(dict.fromkeys(c for s in summary.values() for c in s if c not in DELTAS))
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(columns)), 4))
    for i, label in enumerate(labels):
        values = [score_of(summary[label].get(c)) or 0.0 for c in columns]
        errors = [stderr_of(summary[label], c) or 0.0 for c in columns]
        ax.bar([x + (i - (len(labels) - 1) / 2) * width for x in range(len(columns))], values, width, yerr=errors,
               capsize=3, label=label)
    ax.set_xticks(range(len(columns)), columns, rotation=15)
    ax.set_ylabel("score (± 1 standard error)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
