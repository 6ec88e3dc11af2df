"""The `reseg` command line: list models, segment files, make phantom data, train, export review sessions, measure
layer thickness."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
from tqdm import tqdm

from reseg.devices import BACKEND_CHOICES, DEVICE_CHOICES
from reseg.errors import InputError, ResegError

if TYPE_CHECKING:
    from reseg.io import Volume
    from reseg.train.loop import TrainingConfig

OUTPUT_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz")


def _suffix(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a batch size, a count of epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _check_output(path: Path, what: str, suffixes: Sequence[str] = OUTPUT_SUFFIXES) -> None:
    if _suffix(path) not in suffixes:
        raise InputError(path, f"{what} must end in {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise InputError(path, f"{what} folder {path.parent} does not exist")


def _models(args: argparse.Namespace) -> int:
    from reseg.zoo.catalogue import bundled_model_dir, list_models, model_paths, remove_model

    if args.remove:
        remove_model(args.remove)
        print(f"removed model {args.remove!r}")
        return 0
    paths = model_paths()
    rows = [("name", "architecture", "modality", "classes", "parameters", "val. mean Dice", "source")]
    for card in list_models():
        dice = card.metrics.get("validation", {}).get("mean_dice")
        source = "bundled" if paths[card.name].parent == bundled_model_dir() else str(paths[card.name].parent)
        rows.append(
            (
                card.name,
                card.architecture,
                card.modality,
                str(card.num_classes),
                f"{(card.parameters or 0) / 1e6:.2f} M",
                f"{dice:.3f}" if dice is not None else "-",
                source,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _segment(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if len(args.input) > 1 or output.is_dir() or not output.suffix:  # -o names a folder: a cohort
        return _segment_cohort(args)
    from reseg.io import open_volume, write_image, write_labels
    from reseg.zoo.catalogue import DEFAULT_MODEL, modality_warning, resolve_card

    confidence_path = Path(args.confidence) if args.confidence else None
    boundaries_path = Path(args.boundaries) if args.boundaries else None
    _check_output(output, "output")
    if confidence_path is not None:
        _check_output(confidence_path, "confidence output")
    if boundaries_path is not None:
        _check_output(boundaries_path, "boundaries output", (".csv", ".json"))
    volume = open_volume(args.input[0])  # a NIfTI volume's slices stay in the file until inference reads them
    if volume.label_classes is not None:
        raise InputError(
            volume.source, "is a label map written by napari-reseg (it records its classes), not a scan to segment"
        )
    model_name = args.model or DEFAULT_MODEL[volume.modality]
    warning = modality_warning(resolve_card(model_name, args.card)[0], volume.modality, volume.source.name)
    if warning:
        print(f"reseg: warning: {warning}", file=sys.stderr)
    # torch only now: a file or card that cannot be used is refused in a fraction of a second
    from reseg.classes import OCT_BOUNDARIES
    from reseg.inference.cohort import label_counts
    from reseg.inference.postprocessing import probability_step
    from reseg.inference.segmentation import iter_segment
    from reseg.io import as_stack
    from reseg.zoo.weights import load_model

    model = load_model(model_name, device=args.device, card=args.card, backend=args.backend)
    if boundaries_path is not None and model.card.modality != "OCT":
        raise InputError(
            boundaries_path, f"holds OCT layer boundaries; {model.card.name} is a {model.card.modality} model"
        )
    labels = np.zeros(volume.data.shape, dtype=np.uint8)
    confidence = np.zeros(volume.data.shape, dtype=np.float32) if confidence_path else None
    stack_shape = as_stack(volume.data).shape
    fitted = probability_step(model.card.postprocessing) is not None and not args.raw
    surfaces = np.zeros((len(OCT_BOUNDARIES), stack_shape[0], stack_shape[2]), np.int32) if fitted else None
    bar = tqdm(
        total=len(volume.data),
        unit="slice",
        desc=f"{model.card.name} on {model.device.type}",
        disable=None if len(volume.data) > 1 else True,
        file=sys.stderr,
    )
    with bar:
        for progress in iter_segment(
            model,
            volume.data,
            labels,
            confidence_out=confidence,
            batch_size=args.batch_size,
            pixel_spacing=volume.pixel_spacing,
            raw=args.raw,
            surfaces_out=surfaces,
            voxel_spacing=volume.voxel_spacing,
        ):
            bar.update(progress.done - bar.n)
    write_labels(output, labels, like=volume, classes=model.card.classes)
    if confidence_path is not None and confidence is not None:
        write_image(confidence_path, dataclasses.replace(volume, data=confidence))
    if boundaries_path is not None:
        _write_segment_boundaries(boundaries_path, labels, surfaces, volume, model.card.name)
    counts = label_counts(labels, model.card.num_classes)
    present = ", ".join(f"{c.name} {counts[c.index] / labels.size:.1%}" for c in model.card.classes if counts[c.index])
    print(f"{output}: {labels.shape} labels from {model.card.name} on {model.device.type} ({present})")
    return 0


def _write_segment_boundaries(
    path: Path, labels: np.ndarray, surfaces: np.ndarray | None, volume: Volume, model: str
) -> None:
    """The boundaries `reseg segment --boundaries` writes: the fitted surfaces, else those of the labels."""
    from reseg.classes import OCT_BOUNDARIES
    from reseg.evaluation.evaluate import boundary_rows
    from reseg.io import write_boundaries

    heights = surfaces if surfaces is not None else boundary_rows(labels)
    how = "layer_surfaces" if surfaces is not None else "first row of each class in the labels"
    axial = volume.spacing[1] if volume.pixel_spacing is not None else None
    write_boundaries(path, heights, OCT_BOUNDARIES, axial, str(volume.source), {"model": model, "from": how})
    print(f"{path}: {len(OCT_BOUNDARIES)} boundaries of {heights.shape[1] * heights.shape[2]} A-scans")


def _segment_cohort(args: argparse.Namespace) -> int:
    """`reseg segment` of several scans, a folder of scans or a glob into the folder -o: one model load, one
    progress bar, a summary table; this process's share of the scans under torchrun."""
    from reseg.inference.cohort import FAILED, SUMMARY_CSV, Cohort, ScanDone, Shard, check_outputs, cohort_scans

    folder = Path(args.output)
    if args.confidence or args.boundaries:
        raise ResegError("--confidence and --boundaries are written for one scan (-o FILE), not for a cohort")
    if (folder.exists() and not folder.is_dir()) or _suffix(folder) in OUTPUT_SUFFIXES:
        raise InputError(folder, "names a file; with several scans, a folder of scans or a glob, -o names a folder")
    if not folder.parent.is_dir():
        raise InputError(folder, f"folder {folder.parent} does not exist")
    scans = cohort_scans(args.input, folder)
    check_outputs(scans, folder)
    shard = Shard.from_environment()
    model_name = args.model or _default_model_of(scans)
    from reseg.zoo.weights import load_model  # torch only now: inputs that cannot work are refused first

    model = load_model(model_name, device=shard.device(args.device), card=args.card, backend=args.backend)
    folder.mkdir(exist_ok=True)
    cohort = Cohort.of(model, scans, folder, shard)
    share = f" (rank {shard.rank} of {shard.world_size})" if shard.world_size > 1 else ""
    records = []
    bar = tqdm(unit="slice", desc=f"{model.card.name} on {model.device.type}{share}", disable=None, file=sys.stderr)
    try:
        with bar:
            for event in cohort.run(batch_size=args.batch_size, raw=args.raw):
                if isinstance(event, ScanDone):
                    records.append(event.record)
                    if event.record.status == FAILED:
                        bar.write(f"reseg: error: {event.record.error}", file=sys.stderr)
                else:
                    bar.total = event.total
                    bar.update(event.done - bar.n)
    except KeyboardInterrupt:
        print(f"reseg: interrupted; the {len(records)} scan(s) finished are kept: run again to go on", file=sys.stderr)
        return 130
    rows = cohort.finish(records, args.wait)
    counted = rows if rows is not None else records
    statuses = [row.status for row in counted]
    tally = ", ".join(f"{statuses.count(s)} {s}" for s in dict.fromkeys(statuses))
    where = f"; summary in {folder / SUMMARY_CSV}" if rows is not None else "; rank 0 writes the summary"
    print(f"{folder}: {len(counted)} scan(s){share}: {tally}{where}")
    return 1 if FAILED in statuses else 0


def _default_model_of(scans: Sequence[Path]) -> str:
    """The default model for the modality of the first scan that can be read (a cohort runs one model)."""
    from reseg.io import open_volume
    from reseg.zoo.catalogue import DEFAULT_MODEL

    for scan in scans:
        try:
            return DEFAULT_MODEL[open_volume(scan).modality]
        except ResegError:
            continue  # recorded as failed when its turn comes
    raise InputError(scans[0], f"and the other {len(scans) - 1} scan(s) cannot be read: no model to choose")


def _phantom(args: argparse.Namespace) -> int:
    from reseg.data.dataset import write_training_set
    from reseg.data.phantom import make_oct_phantom

    scans = (
        (
            f"phantom_{index:03d}",
            make_oct_phantom(
                n_bscans=args.bscans,
                height=args.height,
                width=args.width,
                seed=args.seed + index,
                fluid=not args.no_fluid,
                pathology=tuple(args.pathology),
            ),
        )
        for index in range(args.volumes)
    )
    try:  # a size the retina cannot fit; nothing is left behind
        folder = write_training_set(
            args.output,
            ((name, p.image, p.labels, p.spacing) for name, p in scans),
            modality="OCT",
            source=f"reseg phantom (seeds {args.seed}..{args.seed + args.volumes - 1}"
            + (f", {' + '.join(args.pathology)})" if args.pathology else ")"),
        )
    except ValueError as error:
        raise ResegError(f"reseg phantom: {error}") from None
    print(f"{folder}: {args.volumes} phantom volume(s) of {args.bscans} B-scans")
    return 0


def _parse_arguments(pairs: Sequence[str]) -> dict:
    arguments = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key or not value:
            raise ResegError(f"--arg expects KEY=VALUE, got {pair!r}")
        arguments[key] = json.loads(value)
    return arguments


def _training_config(args: argparse.Namespace, **fixed: Any) -> TrainingConfig:
    from reseg.train.loop import TrainingConfig

    return TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        crop_size=tuple(args.crop),
        steps_per_epoch=args.steps_per_epoch,
        seed=args.seed,
        device=args.device,
        freeze=tuple(args.freeze),
        **fixed,
    )


def _report_training(events: Iterable[object]) -> object:
    """Print a progress bar per epoch and a line per validation; pass through any other event (the last)."""
    from reseg.train.loop import EpochReport, StepReport

    bar: tqdm | None = None
    last = None
    try:
        for event in events:
            if isinstance(event, EpochReport):
                if bar is not None:
                    bar.close()
                bar = None
                marker = " (saved)" if event.is_best else ""
                print(
                    f"epoch {event.epoch}/{event.epochs}: loss {event.train_loss:.4f}, validation mean Dice "
                    f"{event.validation['mean_dice']:.4f}, mIoU {event.validation['miou']:.4f} "
                    f"[{event.seconds:.0f} s]{marker}",
                    flush=True,
                )
            elif isinstance(event, StepReport):
                if bar is None:
                    bar = tqdm(
                        total=event.steps, desc=f"epoch {event.epoch}", unit="step", leave=False, file=sys.stderr
                    )
                bar.update(1)
                bar.set_postfix(loss=f"{event.loss:.4f}")
            else:
                last = event
    finally:
        if bar is not None:  # an error ends the epoch: its message starts a line of its own
            bar.close()
    return last


def _train(args: argparse.Namespace) -> int:
    from reseg.data.dataset import load_training_set
    from reseg.train.checkpoint import checkpoint_path
    from reseg.train.distributed import is_main_process
    from reseg.train.loop import iter_train

    config = _training_config(
        args,
        architecture=args.architecture,
        arguments=_parse_arguments(args.arg),
        validation_fraction=args.validation_fraction,
        base_model=args.base,
        resume=args.resume,
        postprocessing=tuple(args.postprocessing) if args.postprocessing is not None else None,
    )
    training_set = load_training_set(args.data)
    validation_set = load_training_set(args.validation_data) if args.validation_data else None
    if is_main_process():
        print(f"{training_set.num_slices} slices in {len(training_set.scans)} scans ({training_set.modality})")
        checkpoint = checkpoint_path(args.output_dir, args.name)
        if args.resume and checkpoint.exists():
            print(f"continuing from {checkpoint}")
    _report_training(
        iter_train(training_set, args.name, args.output_dir, config, args.description, args.terms, validation_set)
    )
    if is_main_process():
        print(f"saved {Path(args.output_dir) / (args.name + '.safetensors')}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    import tempfile

    from reseg.train.distributed import is_main_process
    from reseg.train.finetune import FinetuneResult, iter_finetune
    from reseg.zoo.catalogue import keep_model, model_paths, user_model_dir

    if args.output in model_paths() and not args.replace:
        raise ResegError(
            f"a model named {args.output!r} exists already ({model_paths()[args.output]}); "
            "choose another name (or --replace a model of your own)"
        )
    user_model_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".finetune-", dir=user_model_dir()) as staging:
        result = _report_training(
            iter_finetune(
                args.base, args.data, args.output, staging, _training_config(args), held_out_fraction=args.held_out
            )
        )
        if not is_main_process():
            return 0
        assert isinstance(result, FinetuneResult)  # iter_finetune's last event, on the process that reports
        print(result.comparison.table())
        gain = result.comparison.mean_dice_change
        if args.keep_if_better and not gain > 0:
            print(f"not kept: mean Dice changed by {gain:+.3f} on the held-out scans")
            return 0
        card_path = keep_model(result.weights.with_suffix(".json"), replace=args.replace)
    print(
        f"kept {args.output!r} in {card_path.parent} (see `reseg models`; remove with `reseg models --remove "
        f"{args.output}`)"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from reseg.review.export import export_nnunet, export_training_set
    from reseg.review.session import load_session

    if args.format == "boundaries":
        return _export_boundaries(args)
    if args.format == "nnunet" and (args.dataset_id is None or not args.dataset_name):
        raise ResegError("--format nnunet needs --dataset-id N and --dataset-name NAME (the folder DatasetNNN_NAME)")
    if args.format == "reseg" and (args.dataset_id is not None or args.dataset_name is not None):
        raise ResegError("--dataset-id and --dataset-name apply to --format nnunet only")
    session = load_session(args.session)
    options = {"include_unreviewed": args.include_unreviewed, "overwrite": args.overwrite}
    if args.format == "nnunet":
        result = export_nnunet(session, args.output, args.dataset_id, args.dataset_name, **options)
    else:
        result = export_training_set(session, args.output, **options)
    print(
        f"{result.folder}: {len(result.added)} slice(s) added, {len(result.updated)} updated, "
        f"{result.total} in the dataset"
    )
    return 0


def _export_boundaries(args: argparse.Namespace) -> int:
    """`reseg export --format boundaries`: per A-scan boundary heights of a review session's labels (every
    B-scan, with its review status), or the layer boundaries an OCT device stored in a scan file."""
    from reseg.classes import OCT_BOUNDARIES, OCT_CLASSES
    from reseg.evaluation.evaluate import boundary_rows, device_boundaries
    from reseg.io import read_volume, write_boundaries
    from reseg.io._boundaries import BOUNDARY_EXTENSIONS
    from reseg.review.session import SESSION_SUFFIX, load_session

    if args.include_unreviewed or args.overwrite or args.dataset_id is not None or args.dataset_name is not None:
        raise ResegError("--format boundaries writes every B-scan with its status; it takes only -o OUT.csv|.json")
    output, source = Path(args.output), Path(args.session)
    _check_output(output, "the boundaries", BOUNDARY_EXTENSIONS)
    if source.name.endswith(SESSION_SUFFIX):
        session = load_session(source)
        if [c.name for c in session.classes] != [c.name for c in OCT_CLASSES]:
            raise InputError(source, "is not a session of OCT layer labels: it has no layer boundaries")
        statuses = [entry.status.value for entry in session.review.slices]
        write_boundaries(
            output,
            boundary_rows(session.labels),
            OCT_BOUNDARIES,
            session.axial_spacing_mm,
            str(session.source),
            {"model": session.model_name, "from": "the grader's labels (review session)"},
            {"review_status": statuses},
        )
        reviewed = statuses.count("reviewed")
        print(f"{output}: {len(OCT_BOUNDARIES)} boundaries of {len(statuses)} B-scan(s), {reviewed} reviewed")
        return 0
    volume = read_volume(source)
    device = device_boundaries(volume)
    if not device:
        raise InputError(source, "is neither a review session nor a scan with device layer boundaries")
    names, heights = list(device), np.stack(list(device.values()))
    axial = volume.spacing[1] if volume.pixel_spacing is not None else None
    write_boundaries(
        output,
        heights,
        names,
        axial,
        str(volume.source),
        {"from": f"the device ({volume.metadata.get('format', 'file')})"},
    )
    print(f"{output}: the device's {', '.join(names)} of {heights.shape[1]} B-scan(s)")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from reseg.classes import OCT_CLASSES, SegmentationClass
    from reseg.io import read_volume
    from reseg.measurement.report import MEASUREMENT_EXTENSIONS, measure, write_measurement
    from reseg.review.session import SESSION_SUFFIX, load_session

    output = Path(args.output)
    _check_output(output, "the measurements", MEASUREMENT_EXTENSIONS)
    volume = read_volume(args.scan)
    labels_path = Path(args.labels)
    model, statuses = None, None
    if labels_path.name.endswith(SESSION_SUFFIX):  # a review session: the grader's labels, model and statuses
        session = load_session(labels_path)
        labels, model = session.labels, session.model_name
        classes: Sequence[SegmentationClass] | None = session.classes
        statuses = [entry.status.value for entry in session.review.slices]
    else:
        label_map = read_volume(labels_path)
        labels, classes = label_map.data, label_map.label_classes
    if classes is None or [c.name for c in classes] != [c.name for c in OCT_CLASSES]:
        raise InputError(labels_path, "holds no OCT layer labels (a label map or session of an OCT model)")
    result = measure(volume, np.asarray(labels), model, statuses)
    write_measurement(output, result)
    where = (
        f", ETDRS grid around the fovea at {result.fovea_mm[0]:.2f}, {result.fovea_mm[1]:.2f} mm"
        if result.fovea_mm
        else ""
    )
    print(f"{output}: thickness of {len(result.layers)} layers in {len(result.bscans)} B-scan(s){where}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from reseg.io import replace_atomically

    if args.robustness:
        from reseg.evaluation.robustness import robustness_of

        report: Any = robustness_of(args.prediction, args.dataset, args.device, args.batch_size, args.raw)
    else:
        from reseg.evaluation.evaluate import evaluate

        report = evaluate(args.prediction, args.dataset, device=args.device, batch_size=args.batch_size, raw=args.raw)
    print(report.table())
    if args.output:
        text = json.dumps(report.to_dict(), indent=2) + "\n"
        replace_atomically(Path(args.output), lambda temporary: temporary.write_text(text, encoding="utf-8"))
        print(f"wrote {args.output}")
    return 0


def _add_training_options(parser: argparse.ArgumentParser, epochs: int, lr: float, batch_size: int) -> None:
    parser.add_argument("--epochs", type=_positive_int, default=epochs)
    parser.add_argument("--batch-size", type=_positive_int, default=batch_size, help="per process under torchrun")
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument(
        "--freeze",
        nargs="+",
        default=[],
        metavar="PART",
        help="network parts not to train (e.g. encoder); a wrong name lists the parts",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reseg", description="LightReSeg / L2GNet segmentation of OCT and CT.")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list bundled and user models")
    models.add_argument("--remove", metavar="NAME", help="delete one of your own models (bundled ones stay)")
    models.set_defaults(run=_models)

    segment = commands.add_parser("segment", help="segment an image, stack, NIfTI file or folder of slices")
    segment.add_argument(
        "input",
        nargs="+",
        help="PNG/TIFF image, TIFF stack, NIfTI file, DICOM series, vendor OCT file or folder of PNG/TIFF slices; "
        "several of them, a folder of scans (with -o FOLDER) or a quoted glob make a cohort",
    )
    segment.add_argument(
        "-o",
        "--output",
        required=True,
        help="label map to write (.tif or .nii.gz); for a cohort a folder: <scan>_labels.tif/.nii.gz per scan "
        "and summary.csv/.json (complete scans are skipped when run again)",
    )
    segment.add_argument("--model", help="model name (see `reseg models`) or checkpoint path; default by modality")
    segment.add_argument("--card", help="model card (name or .json) for a checkpoint that has none beside it")
    segment.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    segment.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        help="what runs the network: auto (ONNX Runtime on the CPU when the [onnx] extra is installed, else "
        "PyTorch), torch, or onnx; default: $RESEG_BACKEND, else auto",
    )
    segment.add_argument(
        "--batch-size", type=_positive_int, help="slices per batch; default: the device's (CPU 1, GPU 4)"
    )
    segment.add_argument("--confidence", help="also write the per-pixel confidence (max softmax) here")
    segment.add_argument(
        "--boundaries", help="OCT: also write the 8 layer boundaries per A-scan here (.csv or .json, rows and um)"
    )
    segment.add_argument(
        "--raw", action="store_true", help="the network's argmax without the post-processing its card lists"
    )
    segment.add_argument(
        "--wait",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="cohort under torchrun: how long rank 0 waits for the other ranks' summaries once its share is done",
    )
    segment.set_defaults(run=_segment)

    phantom = commands.add_parser("phantom", help="write a training set of synthetic OCT volumes with exact labels")
    phantom.add_argument("output", help="folder to create (images/, labels/, dataset.json)")
    phantom.add_argument("--volumes", type=int, default=1)
    phantom.add_argument("--bscans", type=int, default=8)
    phantom.add_argument("--height", type=int, default=496)
    phantom.add_argument("--width", type=int, default=768)
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--no-fluid", action="store_true", help="no intraretinal fluid pockets")
    phantom.add_argument(
        "--pathology",
        nargs="+",
        default=[],
        choices=("srf", "drusen", "ped"),
        help="outer-retinal lesions: subretinal fluid (labelled fluid), drusen, serous PED (labelled OS+RPE)",
    )
    phantom.set_defaults(run=_phantom)

    evaluate = commands.add_parser("evaluate", help="score a model or saved predictions on a labelled dataset")
    evaluate.add_argument(
        "prediction", help="model name or checkpoint, or a folder of predicted <scan>.tif label files"
    )
    evaluate.add_argument(
        "dataset",
        help="training-set folder (images/ + labels/ [+ dataset.json]), or an OCT file "
        "with device boundaries (Spectralis .vol): then ILM and BM errors only",
    )
    evaluate.add_argument("-o", "--output", help="also write the report as JSON here")
    evaluate.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    evaluate.add_argument("--batch-size", type=_positive_int, default=4)
    evaluate.add_argument(
        "--raw", action="store_true", help="score a model's argmax without its card's post-processing"
    )
    evaluate.add_argument(
        "--robustness",
        action="store_true",
        help="score the OCT dataset once per device style (log / gamma display, speckle, resolution, "
        "pseudo-colour, weak signal) and report the drop of mean Dice from the Spectralis look",
    )
    evaluate.set_defaults(run=_evaluate)

    train = commands.add_parser("train", help="train a model on training-set folders (images/ + labels/)")
    train.add_argument("data", nargs="+", help="training-set folder(s)")
    train.add_argument("--name", required=True, help="name of the new model (file stem and card name)")
    train.add_argument("-o", "--output-dir", default=".", help="where to write NAME.safetensors and NAME.json")
    train.add_argument("--architecture", default="lightreseg")
    train.add_argument("--arg", action="append", default=[], metavar="KEY=JSON", help="architecture argument")
    train.add_argument("--base", help="start from this model's weights")
    train.add_argument("--validation-data", nargs="+", help="validation folder(s); default: hold out scans of DATA")
    train.add_argument("--validation-fraction", type=float, default=0.2)
    train.add_argument("--description", default="")
    train.add_argument("--terms", default="")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUTPUT_DIR/NAME.checkpoint.pt (written after every epoch) if a stopped run left one",
    )
    train.add_argument(
        "--postprocessing",
        nargs="*",
        metavar="STEP",
        help="the card's post-processing steps (e.g. layer_surfaces, confine_to_body); default: the base model's",
    )
    _add_training_options(train, epochs=20, lr=1e-3, batch_size=8)
    train.set_defaults(run=_train)

    finetune = commands.add_parser(
        "finetune", help="fine-tune a model on exported corrections, compare old and new on held-out scans, keep it"
    )
    finetune.add_argument("--base", required=True, help="the model to start from (see `reseg models`)")
    finetune.add_argument("--data", nargs="+", required=True, help="exported training-set folder(s)")
    finetune.add_argument("-o", "--output", required=True, metavar="NEW_NAME", help="name of the new model")
    finetune.add_argument(
        "--held-out",
        type=float,
        default=0.2,
        help="share of the scans (whole scans) kept out of training to compare the models on",
    )
    finetune.add_argument(
        "--keep-if-better",
        action="store_true",
        help="keep the new model only if its held-out mean Dice beats the base model's",
    )
    finetune.add_argument("--replace", action="store_true", help="replace an own model of the same name")
    _add_training_options(finetune, epochs=10, lr=2e-4, batch_size=4)
    finetune.set_defaults(run=_finetune)

    measure = commands.add_parser("measure", help="OCT layer thickness per B-scan and on the ETDRS grid")
    measure.add_argument("scan", help="the OCT scan (for its pixel size and B-scan positions)")
    measure.add_argument("labels", help="its labels: a label map reseg wrote, or a review session (.reseg-session.npz)")
    measure.add_argument("-o", "--output", required=True, help="OUT.csv or OUT.json")
    measure.set_defaults(run=_measure)

    export = commands.add_parser("export", help="export a review session's reviewed slices as a training set")
    export.add_argument(
        "session", help="session file (<scan>.reseg-session.npz); with --format boundaries also a scan (.vol)"
    )
    export.add_argument(
        "-o",
        "--output",
        required=True,
        help="training-set folder (reseg), or the nnU-Net raw folder that gets DatasetNNN_NAME",
    )
    export.add_argument(
        "--format",
        choices=("reseg", "nnunet", "boundaries"),
        default="reseg",
        help="boundaries: per A-scan layer boundary heights as CSV/JSON (-o OUT.csv|.json)",
    )
    export.add_argument(
        "--include-unreviewed",
        action="store_true",
        help="also export unreviewed slices, every label pixel set to the ignore value",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing export this one clashes with (other classes, other scan's files)",
    )
    export.add_argument("--dataset-id", type=int, help="nnU-Net dataset id (1..999)")
    export.add_argument("--dataset-name", help="nnU-Net dataset name")
    export.set_defaults(run=_export)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A library's warning as one labelled line, not a two-line source excerpt."""
    print(f"reseg: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except ResegError as error:
        print(f"reseg: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reseg: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
