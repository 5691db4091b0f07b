"""RUN/training/report.{json,md}: curves, confusion matrix, per-class precision/recall, worst mistakes."""

from __future__ import annotations

from edgeship.core.layout import RunLayout
from edgeship.runtime.fileio import atomic_write_json, atomic_write_text
from edgeship.runtime.spec import Bundle


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


PHASE_NAMES = {"phase1": "phase 1 (head on a frozen backbone, or the whole model)", "phase2": "phase 2 (fine-tuning)"}


def _phases(epochs: dict) -> str:
    """{'phase1': 12, 'phase2': 3} -> 'phase 1 (...) 12, phase 2 (fine-tuning) 3'."""
    return ", ".join(f"{PHASE_NAMES.get(name, name)} {count}" for name, count in epochs.items()) or "none"


def write_training_report(layout: RunLayout, bundle: Bundle, evaluation: dict) -> None:
    training = bundle.provenance["training"]
    dataset = bundle.provenance["dataset"]
    atomic_write_json(layout.training / "report.json", {"training": training, "dataset": dataset,
                                                        "split_counts": bundle.provenance["split"]["counts"],
                                                        "test": evaluation})
    lines = [
        "# edgeship training report", "",
        f"**{training['backbone']}** at {training['image_size']} px: test accuracy **{_pct(evaluation['accuracy'])}** "
        f"on {evaluation['n_test']} images; best validation accuracy {_pct(training['best_val_accuracy'])}.",
        f"Epochs: {_phases(training['epochs_per_phase'])}; frozen backbone: {training['frozen_backbone']} "
        f"(cached features: {training['cached_features']}); augmentation: {training['augment']}; "
        f"{training['seconds']} s." + "".join(f"\n\n{note}." for note in training.get("stopped_early") or [])
        + "".join(f"\n\n> **Warning:** {w}" for w in training.get("warnings") or []), "",
        f"Dataset: {dataset['n_images']} images in {dataset['n_classes']} classes ({dataset.get('layout', 'class folders')}); "
        f"**{dataset['n_skipped']} skipped** as unreadable."
        + "".join(f"\n- skipped `{s['path']}`: {s['reason']}" for s in dataset.get("skipped", [])[:20]), "",
        "![training curves](curves.png)", "",
    ]
    if (layout.training / "curves_fine_tune.png").is_file():
        lines += ["Fine-tuning phase:", "", "![fine-tuning curves](curves_fine_tune.png)", ""]
    if (layout.training / "augmentation.png").is_file():
        lines += ["Augmentation preview (training split only):", "", "![augmentation](augmentation.png)", ""]
    unknown = evaluation.get("unknown")
    if unknown:
        text = (f"Unknown-class threshold **{unknown['threshold']:.4f}** (keeps {_pct(unknown['target_val_recall'])} "
                f"of validation images); it rejects {_pct(unknown['test_rejection_rate'])} of test images")
        if "ood_rejection_rate" in unknown:
            text += f" and **{_pct(unknown['ood_rejection_rate'])}** of {unknown['ood_images']} out-of-distribution images"
        lines += [text + ".", ""]
    lines += ["## Per class", "", "Worst F1 first.", "", "| class | precision | recall | F1 | support |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['label']} | {_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} | {r['support']} |"
              for r in sorted(evaluation["per_class"], key=lambda r: r["f1"])]
    lines += ["", "## Confusion matrix (rows: true class)", "", "![confusion matrix](confusion.png)", ""]
    if evaluation.get("worst_png"):
        lines += ["## Most confident mistakes", "", "![worst misclassified test images](worst.png)", ""]
    atomic_write_text(layout.training / "report.md", "\n".join(lines))
