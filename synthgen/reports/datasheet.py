"""``DATASHEET.md``: what a synthetic dataset is, how it was made, what it may be used for.

Written by the validate stage beside ``manifest.json`` and published with the data, in
the spirit of "Datasheets for Datasets" (Gebru et al.): source, schema, model, privacy,
the verdict with its key figures, intended use and known limits. The augment stage
writes one for its augmented training set (composition, the generator's verdict, the
measured benefit; :func:`render_augment_datasheet`). Everything in it is
read from the run's own records (manifest, schema, validation report, the saved
model's ``synthesizer.json``); nothing is claimed that the run did not measure.
"""

from __future__ import annotations

import math
from typing import Any

from synthgen.data.schema import TableSchema
from synthgen.synthesizers import REGISTRY

DIGEST_NOTE = "a digest is the first 36 hex digits of the sha256: `sha256sum FILE | cut -c1-36`"

# the figures a consumer should see first (also copied into manifest["validation"]["key_metrics"])
KEY_METRICS = ("quality_score", "detection_auc", "tstr_ratio", "exact_copy_rate", "dcr_overfitting_share", "mia_auc")
_MEANING = {
    "quality_score": "mean of column-shape and pair-trend similarity (1 is ideal)",
    "detection_auc": "AUC of classifiers telling real from synthetic rows (0.5 is ideal)",
    "tstr_ratio": "score of a model trained on synthetic / trained on real, tested on the real holdout",
    "exact_copy_rate": "share of synthetic rows identical to a training row",
    "dcr_overfitting_share": "share of synthetic rows closer to train than to holdout rows (0.5 is ideal)",
    "mia_auc": "AUC of a membership-inference attack (0.5 is ideal)",
}


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _column_row(spec: Any, private: bool = False) -> str:
    """One schema row. ``private`` (a DP run): only what the privacy ledger declares public -
    levels in sorted order (not by real frequency), ranges, whether a column may be missing
    (not its real missing rate)."""
    levels = sorted(map(str, spec.categories)) if private and spec.categories else spec.categories
    if spec.categories:
        shown = ", ".join(map(str, levels[:6])) + (f" (+{len(levels) - 6})" if len(levels) > 6 else "")
    elif spec.min is not None and spec.max is not None:
        shown = f"{_fmt(spec.min)} .. {_fmt(spec.max)}"
    else:
        shown = ""
    missing = ("may be" if spec.missing_rate else "no") if private else f"{spec.missing_rate:.1%}"
    return f"| {_cell(spec.name)} | {spec.kind} | {spec.dtype} | {missing} | {_cell(shown)} |"


def _privacy_lines(manifest: dict[str, Any]) -> tuple[list[str], bool]:
    privacy = manifest.get("privacy") or {}
    epsilon = privacy.get("epsilon")
    if epsilon is None:
        return ["**No differential privacy.** The model was trained on the real rows without a formal "
                "privacy guarantee; the privacy figures below are measurements on this draw, not a bound.",
                "What holds regardless: identifier-like columns were replaced by surrogate keys and levels "
                "seen fewer than `data.min_level_count` times pooled at ingest, so neither reaches the model "
                "or this data; the published report is built from no real row. What does not: rare "
                "combinations of kept values, and anything a membership-inference attack can still find "
                "(see `mia_auc`)."], False
    spent = privacy.get("epsilon_spent")
    ledger = privacy.get("privacy_ledger")
    if not ledger:  # a model saved before the ledger existed
        return [f"**Differential privacy (DP-SGD on the critic):** epsilon budget {_fmt(epsilon)}, "
                f"spent {_fmt(spent)}, delta {_fmt(privacy.get('delta'))}.",
                "Declared public and not protected by the budget: category sets, numeric ranges and the "
                "row count; the choice of the most frequent levels of wide categorical columns."], True
    return _ledger_lines(ledger), True


def _ledger_lines(ledger: dict[str, Any]) -> list[str]:
    """The privacy ledger (see ``synthgen.training.dp.CriticPrivacy.ledger``) as Markdown:
    the releases with their share of epsilon and the total, the public items by column,
    what is not covered and why the run is not bit-reproducible."""
    budget, total = ledger.get("epsilon"), ledger.get("epsilon_spent")
    lines = [f"**Differential privacy:** epsilon {_fmt(total)} spent of a budget of {_fmt(budget)}, "
             f"delta {_fmt(ledger.get('delta'))}, {ledger.get('accountant', '?')} accountant; protected unit: "
             f"{ledger.get('unit', 'one row')}. Every release of the real rows is charged to that budget:", "",
             "| release | mechanism | noise | share of ε | what |", "| --- | --- | --- | --- | --- |"]
    if ledger.get("mechanism"):
        lines[:0] = [f"**Mechanism:** {ledger['mechanism']}.", ""]
    for r in ledger.get("releases", []):
        noise = f"noise multiplier {_fmt(r.get('noise_multiplier'))} (σ {_fmt(r.get('sigma'))})"
        if r.get("sigma") is None and r.get("epsilon") is not None:  # an exponential-mechanism selection
            noise = f"ε {_fmt(r['epsilon'])}, score sensitivity {_fmt(r.get('sensitivity'))}"
        if r.get("steps") is not None:
            noise += f", sample rate {_fmt(r.get('sample_rate'))}, {r['steps']} steps"
        share = f"{_fmt(r.get('epsilon_share'))} ({(r.get('share_of_budget') or 0):.0%} of the budget)"
        lines.append(f"| {_cell(r.get('name'))} | {_cell(r.get('mechanism'))} | {noise} | {share} | {_cell(r.get('what'))} |")
    lines += [f"| **total** | composed by the {ledger.get('accountant', '?')} accountant | δ {_fmt(ledger.get('delta'))} | "
              f"**{_fmt(total)}** of {_fmt(budget)} | the shares add up to the total (each is the increase of "
              "the composed ε when its release was added) |", ""]
    public = ledger.get("public", [])
    if public:
        lines.append("Declared public (`data.public_bounds: true`), read from the schema and not protected by the budget:")
        for item in public:
            what = item.get("what", "?")
            detail = item.get("detail")
            if what == "bounds" and item.get("value"):
                detail = f"{_fmt(item['value'][0])} .. {_fmt(item['value'][1])}"
            name = f"`{item['column']}`" if item.get("column") is not None else "the table"
            lines.append(f"- {name}: {what}" + (f" ({detail})" if detail else "")
                         + (f" = {item['value']}" if what == "row count" else ""))
        lines.append("")
    if ledger.get("not_covered"):
        lines.append("Not covered by the guarantee:")
        lines += [f"- {sentence}" for sentence in ledger["not_covered"]]
        lines.append("")
    if ledger.get("reproducible") is False:
        lines.append(f"**Not bit-reproducible**, because {ledger.get('not_reproducible_because', 'the noise is secret')}.")
    return lines


def render_datasheet(
    manifest: dict[str, Any],
    schema: TableSchema,
    model_meta: dict[str, Any],
    report: dict[str, Any],
) -> str:
    """The Markdown datasheet of one validated synthetic dataset.

    Args:
        manifest: the run's manifest (``generation.json`` plus ``validation``).
        schema: the real table's schema from ingest.
        model_meta: the saved model's ``synthesizer.json`` (``{}`` when unknown).
        report: the validation report (``metrics`` and ``checks``).
    """
    verdict = manifest.get("validation") or {}
    passed = bool(verdict.get("passed"))
    config = model_meta.get("config") or {}
    extra = model_meta.get("extra") or {}
    n_train = model_meta.get("n_train")
    family = manifest.get("model") or model_meta.get("name", "?")
    epochs = config.get("epochs")
    epochs_run = extra.get("epochs_run", epochs)
    metrics = report.get("metrics", {})
    privacy_lines, dp = _privacy_lines(manifest)
    generator = manifest.get("generator") or {}

    out = [f"# Datasheet: synthetic data from `{manifest.get('source_data', '?')}`", ""]
    status = "PASSED" if passed else f"REJECTED (failed: {', '.join(verdict.get('failed_checks') or []) or '?'})"
    out += [f"**Verdict: {status}.** {manifest.get('rows', '?')} synthetic rows in `{manifest.get('synthetic', 'synthetic.parquet')}` "
            f"(digest `{manifest.get('synthetic_hash', '?')}`), made by synthgen {manifest.get('synthgen_version', '?')}.", ""]

    out += ["## Source", "",
            f"- file: `{manifest.get('source_data', '?')}`",
            f"- digest: `{manifest.get('source_data_hash') or 'unknown'}` ({DIGEST_NOTE})",
            f"- rows used for training: {n_train if n_train is not None else '?'}; a holdout split of the file "
            "was never trained on and serves only for scoring", ""]

    out += ["## Schema", "", "| column | kind | dtype | missing | levels / range |", "| --- | --- | --- | --- | --- |"]
    private = (manifest.get("privacy") or {}).get("epsilon") is not None
    out += [_column_row(spec, private) for spec in schema.columns]
    if schema.target:
        out += ["", f"Target column (utility metrics, stratified split): `{schema.target}`."]
    out.append("")

    out += ["## Model", "",
            f"- family: `{family}`",
            f"- {getattr(REGISTRY.get(family), 'epoch_unit', 'epochs')}: {epochs if epochs is not None else '?'} "
            f"configured, {epochs_run if epochs_run is not None else '?'} run",
            f"- seed: {config.get('seed', '?')} (generation seed {manifest.get('seed', '?')})",
            f"- training time: {_fmt(manifest.get('train_seconds'))} s",
            f"- MLflow run: `{manifest.get('mlflow_run_id') or 'not tracked'}`"]
    if generator.get("version"):
        out.append(f"- registered generator: `models:/{generator['registered_model']}/{generator['version']}`")
    if manifest.get("conditions"):
        out.append(f"- generated under conditions: `{manifest['conditions']}` (the data does not represent the whole population)")
    out.append("")

    out += ["## Privacy", "", *privacy_lines]
    dropped = (manifest.get("privacy_filter") or {}).get("dropped")
    if dropped:
        out.append(f"A privacy filter dropped {dropped} synthetic rows too close to a training row.")
    out.append("")

    out += ["## Validation", "", *_validation_table(report, KEY_METRICS, _MEANING)]
    missing = [m for m in KEY_METRICS if m not in metrics]
    if missing:
        out += ["", f"Not measured in this run: {', '.join(missing)}."]
    out += ["", f"Full figures: `{verdict.get('file', 'validation.json')}` and `report.html` of the run.", ""]

    out += ["## Intended use", "",
            "- prototyping, testing pipelines and dashboards, teaching and sharing the *shape* of the data "
            "where the real rows cannot be shared;",
            "- augmenting or pre-training models, with final evaluation always on real data;",
            "- not for decisions about real individuals, and not as evidence about the real population "
            "beyond what the validation figures above show.", ""]

    out += ["## Known limits", "",
            f"- These rows come from {getattr(REGISTRY.get(family), 'description', 'a GAN')} (`{family}`) trained on "
            f"{n_train if n_train is not None else 'an unknown number of'} real rows for "
            f"{epochs_run if epochs_run is not None else '?'} {getattr(REGISTRY.get(family), 'epoch_unit', 'epochs')}. "
            "What it reproduces is what the "
            "figures above measure (column shapes, pairwise trends, a classifier's view); rare categories, "
            "tails and higher-order interactions are reproduced less faithfully, and every figure is an "
            "estimate with sampling noise.",
            "- Missing values are modelled with the other columns (a missing level or flag per column, its "
            "frequency from the noisy counts)." if dp else
            "- Missing numbers are modelled jointly with the other columns, as one missingness pattern per row: "
            "columns missing together stay missing together (patterns seen fewer than 10 times in training take "
            "the nearest frequent pattern); missing categories are a level of their column."
            if getattr(REGISTRY.get(family), "joint_missing", False) else
            "- Missing values are re-inserted independently per column at each column's training rate: "
            "which columns are missing *together* is not preserved.",
            "- Numeric columns keep the value structure learned at ingest (the schema's `structure`): point "
            "masses such as exact zeros are drawn as such, values lie on the column's grid (decimals, round "
            "steps by magnitude), and a column that never exceeded another in training never does here.",
            "- Columns of kind `id` are fresh keys and `constant` columns are refilled; neither links to real rows."]
    if dp:
        out.append("- The privacy guarantee covers the model's training as stated above; any other use of the "
                   "real data (validation scores, this datasheet's ranges and levels) is outside the budget.")
    else:
        out.append("- Without differential privacy there is no formal guarantee: a GAN can memorise training rows. "
                   "Exact copies, distances to closest records and the membership-inference AUC bound nothing; "
                   "they only show that this draw did not leak in those measured ways.")
    if "tstr_ratio" not in metrics:
        out.append("- Downstream utility was not measured (no `data.target`).")
    out.append("")
    return "\n".join(out)


# -- image datasets ----------------------------------------------------------------------
IMAGE_KEY_METRICS = ("image_detection_auc", "fid_random", "generated_class_accuracy", "fid_domain", "kid_domain",
                     "tstr_accuracy", "real_accuracy", "exact_copy_rate", "memorization_ratio", "metric_failures")
_IMAGE_MEANING = {
    "image_detection_auc": "how well a classifier tells synthetic from real holdout images (0.5 = not at all, "
                           "1 = always)",
    "fid_random": "Fréchet distance in a fixed random CNN's features, not trained on the data (compare with the "
                  "holdout's own value in validation.json)",
    "metric_failures": "metrics on which synthetic images beat real unseen ones (untrustworthy there; 0 expected)",
    "generated_class_accuracy": "share of images generated for class k that the judge CNN calls k (chance = 1/classes)",
    "fid_domain": "Fréchet distance of judge-CNN features, synthetic vs train (0 is ideal; compare with the "
                  "holdout baseline in validation.json)",
    "kid_domain": "kernel (MMD) distance of the same features (0 is ideal)",
    "tstr_accuracy": "holdout accuracy of a CNN trained on the synthetic images only",
    "real_accuracy": "holdout accuracy of the judge, trained on the real train split (the reference)",
    "exact_copy_rate": "share of synthetic images byte-identical to a training image",
    "memorization_ratio": "median pixel distance to the nearest train image, synthetic / holdout (about 1 is "
                          "ideal; well below 1 suggests copying)",
}


def _validation_table(report: dict[str, Any], keys: tuple[str, ...], meaning: dict[str, str]) -> list[str]:
    """The Markdown table of the key metrics (with their gate) and of every other gate."""
    checks = {c["name"]: c for c in report.get("checks", [])}
    metrics = report.get("metrics", {})

    def bound(check: dict[str, Any]) -> str:
        return f"{'≥' if check.get('kind') == 'min' else '≤'} {_fmt(check['threshold'])}"

    out = ["| metric | value | threshold | passed | meaning |", "| --- | --- | --- | --- | --- |"]
    for name in keys:
        if name in metrics:
            check = checks.get(name)
            out.append(f"| {name} | {_fmt(metrics[name])} | {bound(check) if check else '—'} | "
                       f"{_fmt(check['passed']) if check else '—'} | {meaning[name]} |")
    for name, check in checks.items():
        if name not in keys:
            out.append(f"| {name} | {_fmt(check['value'])} | {bound(check)} | {_fmt(check['passed'])} | "
                       "a gate of the verdict |")
    return out


def render_image_datasheet(manifest: dict[str, Any], schema: Any, model_meta: dict[str, Any],
                           report: dict[str, Any]) -> str:
    """The Markdown datasheet of one validated synthetic image dataset.

    Args:
        manifest: the run's manifest (``generation.json`` plus ``validation``).
        schema: the :class:`~synthgen.data.images.ImageSchema` from ingest.
        model_meta: the saved model's ``synthesizer.json`` (``{}`` when unknown).
        report: the validation report (``metrics``, ``checks``, ``details``).
    """
    verdict = manifest.get("validation") or {}
    passed = bool(verdict.get("passed"))
    config = model_meta.get("config") or {}
    extra = model_meta.get("extra") or {}
    n_train = sum(schema.counts.get("train", {}).values())
    epochs, epochs_run = config.get("epochs"), extra.get("epochs_run", config.get("epochs"))
    shape = manifest.get("image_shape") or [schema.image_size, schema.image_size, schema.channels]
    augment = manifest.get("augment") or {}
    status = "PASSED" if passed else f"REJECTED (failed: {', '.join(verdict.get('failed_checks') or []) or '?'})"
    folder = manifest.get("synthetic", "synthetic")

    out = [f"# Datasheet: synthetic images from `{manifest.get('source_data', '?')}`", "",
           f"**Verdict: {status}.** {manifest.get('rows', '?')} synthetic images of {shape[0]}×{shape[1]}×{shape[2]} "
           f"in `{folder}/` (one folder per class, index `{folder}/labels.csv`; digest of the folder "
           f"`{manifest.get('synthetic_hash', '?')}`), made by synthgen {manifest.get('synthgen_version', '?')}.", ""]
    out += ["## Source", "",
            f"- data: `{manifest.get('source_data', '?')}` (digest `{manifest.get('source_data_hash') or 'unknown'}`; {DIGEST_NOTE})",
            f"- images used for training: {n_train}; a stratified holdout of "
            f"{sum(schema.counts.get('holdout', {}).values())} images was never trained on and serves only for scoring",
            f"- resized to {schema.image_size}×{schema.image_size}, {schema.channels} channel(s)", ""]
    out += ["## Classes", "", "| class | train images | synthetic images |", "| --- | --- | --- |"]
    synthetic_counts = manifest.get("counts") or {}
    out += [f"| {_cell(c)} | {schema.counts.get('train', {}).get(c, 0)} | {synthetic_counts.get(c, 0)} |"
            for c in schema.classes]
    out.append("")
    out += ["## Model", "",
            f"- family: `{manifest.get('model') or model_meta.get('name', '?')}` (class-conditional GAN)",
            f"- epochs: {epochs if epochs is not None else '?'} "
            f"configured, {epochs_run if epochs_run is not None else '?'} run",
            f"- discriminator augmentation: {augment.get('mode', '?')}"
            + (f" (final ADA p {_fmt(augment.get('ada_p'))})" if augment.get("ada_p") is not None else ""),
            f"- seed: {config.get('seed', '?')} (generation seed {manifest.get('seed', '?')})",
            f"- training time: {_fmt(manifest.get('train_seconds'))} s",
            f"- MLflow run: `{manifest.get('mlflow_run_id') or 'not tracked'}`"]
    if manifest.get("conditions"):
        out.append(f"- generated under conditions: `{manifest['conditions']}` (not the whole class mix)")
    out.append("")
    out += ["## Privacy", "", "No differential privacy: `image_cgan` trains without a formal guarantee.", ""]
    out += ["## Validation", "", *_validation_table(report, IMAGE_KEY_METRICS, _IMAGE_MEANING), "",
            "The judge is a small CNN trained on the real train split "
            f"({_fmt((report.get('details', {}).get('judge') or {}).get('train_images'))} images; no downloaded "
            "weights), so fid_domain/kid_domain are *domain* figures that a generator can fool; fid_random and "
            "image_detection_auc use nothing trained on the data. None compares with published Inception FIDs.",
            f"Full figures: `{verdict.get('file', 'validation.json')}` and `report.html` of the run.", ""]
    out += ["## Intended use", "",
            "- prototyping and testing image pipelines, sharing the look of a class where the real images cannot "
            "be shared;",
            "- augmenting or pre-training classifiers, with final evaluation always on real images "
            "(`synthgen augment` measures whether it helps);",
            "- not as evidence about the real images beyond what the figures above show.", ""]
    out += ["## Known limits", "",
            f"- A GAN trained on {n_train} images for {epochs_run if epochs_run is not None else '?'} epochs: it "
            "reproduces what the judge CNN sees; fine detail, rare styles and the diversity within a class are "
            "reproduced less faithfully, and every figure is an estimate with sampling noise.",
            "- Without differential privacy a GAN can memorise training images. Exact copies and nearest-neighbour "
            "distances bound nothing; they only show that this draw did not leak in those measured ways.", ""]
    return "\n".join(out)


# -- augmented training sets -------------------------------------------------------------
def describe_generator_verdict(verdict: dict[str, Any] | None) -> str:
    """One phrase for an augment manifest's ``generator_validation`` (datasheet and report)."""
    if verdict is None:
        return ("not validated (no verdict on this very model was on record when the set was written; "
                "`synthgen validate` before `synthgen augment` records one)")
    if verdict.get("passed"):
        return "PASSED its trust gate"
    return f"REJECTED by its trust gate (failed: {', '.join(verdict.get('failed_checks') or []) or '?'})"


def render_augment_datasheet(manifest: dict[str, Any], benefit: dict[str, Any]) -> str:
    """The Markdown datasheet of an augmented training set (``augment/DATASHEET.md``).

    Args:
        manifest: the augment stage's manifest (tables and images alike).
        benefit: the stage's ``benefit.json`` (``{"measured": False}`` when not measured).
    """
    images = manifest.get("kind") == "image"
    unit = "images" if images else "rows"
    rows = manifest.get("rows") or {}
    where = (f"`{manifest.get('augmented', 'images')}/` (`real/` and `synthetic/` folders, index "
             f"`{manifest.get('files', 'images/labels.csv')}` with a `source` column)" if images else
             f"`{manifest.get('augmented', 'augmented.parquet')}` (provenance column "
             f"`{manifest.get('provenance_column', '_source')}`: `real` / `synthetic`)")
    generator = manifest.get("generator_validation")
    verdict = describe_generator_verdict(generator)

    out = [f"# Datasheet: augmented training set from `{manifest.get('source_data', '?')}`", "",
           f"{rows.get('real', '?')} real + {rows.get('synthetic', '?')} synthetic {unit} = {rows.get('total', '?')} "
           f"in {where}; digest `{manifest.get('augmented_hash', '?')}`, made by synthgen "
           f"{manifest.get('synthgen_version', '?')}.", "",
           f"**It contains the real train split.** Handle it as you handle the real data: the synthetic {unit} "
           "add no privacy to it, and it must not be shared as synthetic data.", ""]
    out += ["## Source", "",
            f"- data: `{manifest.get('source_data', '?')}` (digest `{manifest.get('source_data_hash') or 'unknown'}`; {DIGEST_NOTE})",
            f"- real {unit}: the train split (digest `{manifest.get('train_hash', '?')}`), unchanged",
            f"- the holdout (digest `{manifest.get('holdout_hash') or 'unknown'}`) is not in this set; "
            f"it was used for: {manifest.get('holdout_used_for', '?')}", ""]
    plan = (f"`rebalance`, ratio {_fmt(manifest.get('ratio'))} (every class lifted to round(ratio × the majority class's count))"
            if manifest.get("mode") == "rebalance" else
            f"`enlarge`, factor {_fmt(manifest.get('factor'))} (the class mix of the train split kept)")
    out += ["## Composition", "", f"Class `{manifest.get('target', '?')}`; mode {plan}.", "",
            f"| class | real {unit} | synthetic added | total |", "| --- | --- | --- | --- |"]
    out += [f"| {_cell(c)} | {e['before']} | {e['added']} | {e['after']} |"
            for c, e in (manifest.get("classes") or {}).items()]
    if manifest.get("unlabelled_real_rows"):
        out.append(f"\n{manifest['unlabelled_real_rows']} real rows without a class are kept and get no synthetic rows.")
    out.append("")
    out += ["## Model", "",
            f"- family: `{manifest.get('model', '?')}`, conditioned on the class (sha256 of the model directory "
            f"`{manifest.get('model_hash', '?')}`)",
            f"- seed of the written draw: {manifest.get('seed', '?')}",
            f"- the generator's own synthetic data: {verdict}",
            f"- MLflow run: `{manifest.get('mlflow_run_id') or 'not tracked'}`", ""]
    if generator and generator.get("key_metrics"):
        out += ["| metric of the generator's validation | value |", "| --- | --- |"]
        out += [f"| {name} | {_fmt(value)} |" for name, value in generator["key_metrics"].items()]
        out.append("")

    out += ["## Measured benefit", ""]
    if benefit.get("measured"):
        protocol = benefit.get("protocol") or {}
        out += [f"Downstream models trained on the real split (**real**), on this set (**augmented**) and on the "
                "real split with class weights (**reweighted**, the free alternative), scored on the untouched "
                f"real holdout over {protocol.get('repeats', '?')} repeats (new synthetic draw and model seed each). "
                f"Minority class: `{benefit.get('minority')}`. Lift = augmented − real, mean ± sd [min, max].", "",
                "| model | metric | real | augmented | lift | augmented − reweighted |",
                "| --- | --- | --- | --- | --- | --- |"]
        for model, metrics in benefit["models"].items():
            for metric, s in metrics.items():
                lift, versus = s["lift"], s["lift_vs_reweighted"]
                if lift["mean"] is None:
                    continue
                out.append(f"| {model} | {metric} | {_fmt(s['real']['mean'])} | {_fmt(s['augmented']['mean'])} | "
                           f"{lift['mean']:+.3f} ± {lift['sd']:.3f} [{lift['min']:+.3f}, {lift['max']:+.3f}] | "
                           f"{versus['mean']:+.3f} |")
        out += ["", "Use the set only where, on the metric you care about, both the lift and augmented − "
                "reweighted are positive; otherwise class weights on the real data do as well for free.", ""]
    else:
        out += ["Not measured (`augment.benefit: false`): nothing is known about whether this set helps a model.", ""]

    out += ["## Intended use", "",
            f"- training a downstream model on more {unit} of the rarer classes, with evaluation always on real data;",
            "- not for sharing (it holds real data), and not as evidence about the real population.", ""]
    out += ["## Known limits", "",
            f"- The synthetic {unit} are only as faithful per class as the generator; rare classes, the ones "
            "augmentation targets, are the ones it learned from the fewest examples.",
            "- The benefit's spread covers the synthetic draw and the downstream model's seed, not the train/holdout "
            "split or the GAN's training seed; a small holdout makes each minority "
            f"{'image' if images else 'row'} a large step of minority recall.", ""]
    return "\n".join(out)
