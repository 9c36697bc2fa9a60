"""``microseg stats``: a study of many fields of view with confidence intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import MicrosegError
from ..core.output_paths import check_outputs
from ..core.stats import export_stats, stats_provenance, study_from_inputs, study_hardening
from ..core.stats.export import WORKBOOK
from ._flags import bounded_float, bounded_int

#: Tables ``microseg stats`` writes (one CSV each, plus ``hardening`` with --thickness).
STUDY_TABLES = ("pooled", "per_field", "outliers", "distributions", "lognormal", "histograms",
                "fields")


def add_study_options(p) -> None:
    """Options shared by ``microseg stats`` and ``microseg compare``."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the tables")
    p.add_argument("--xlsx", action="store_true", help=f"also write {WORKBOOK} (one sheet per table)")
    p.add_argument("--conf", type=bounded_float(0.5, 0.999), default=0.95,
                   help="confidence level of every interval (default 0.95)")
    p.add_argument("--seed", type=bounded_int(0), default=0, help="bootstrap seed (default 0)")
    p.add_argument("--n-boot", type=bounded_int(100, 100_000), default=1000,
                   help="bootstrap resamples (default 1000)")
    p.add_argument("--size", default="equivalent_diameter",
                   help="size measure: equivalent_diameter (default), feret_max, feret_min, major_axis")


def register(sub) -> None:
    """Add the ``stats`` subcommand."""
    p = sub.add_parser(
        "stats",
        help="pool many measured fields of view into one study with confidence intervals",
        description="Read a batch output folder, folders of measure outputs, measure tables "
        "(.csv with its _summary.csv, .xlsx, .json) or image + labels pairs and write the per-field and pooled "
        "statistics with 95 % intervals (each table says which interval), outlier fields, "
        "size distributions, a log-normal fit and, with --thickness, barrier hardening with "
        "its interval.",
    )
    p.add_argument("inputs", nargs="*", help="batch output folder(s), measure table files or folders")
    p.add_argument("--pair", nargs=2, action="append", default=[], metavar=("IMAGE", "LABELS"),
                   help="also measure LABELS on IMAGE as one field (repeatable)")
    p.add_argument("--pixel-size", type=bounded_float(1e-6, None, "nm"), metavar="NM",
                   help="pixel size of the --pair images (default: from each image or labels)")
    add_study_options(p)
    p.add_argument("--thickness", type=bounded_float(0.0, 1e6, "nm"), metavar="NM",
                   help="foil thickness: adds volumetric density and barrier hardening")
    p.add_argument("--thickness-sd", type=bounded_float(0.0, 1e6, "nm"), default=0.0, metavar="NM",
                   help="standard deviation of the foil thickness (default 0)")
    p.add_argument("--alpha", action="append", metavar="A|CLASS=A",
                   help="barrier strength: one value for every class, or CLASS=A (repeatable); "
                   "default: 0.11 <111> loop, 0.32 <100> loop, 0.10 black dot")
    p.add_argument("--alpha-sd", action="append", metavar="S|CLASS=S",
                   help="standard deviation of alpha, for every class or CLASS=S (default 0)")
    p.set_defaults(func=run)


def parse_per_class(values, what: str, classes) -> dict[str, float] | float | None:
    """``["0.1"]`` -> 0.1 for every class; ``["a=0.1", "b=0.3"]`` -> ``{"a": 0.1, "b": 0.3}``."""
    if not values:
        return None
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.rpartition("=")
        try:
            x = float(num)
        except ValueError:
            raise MicrosegError(f"{what} {v!r}: expected a number or CLASS=NUMBER.") from None
        if not np.isfinite(x) or x < 0:
            raise MicrosegError(f"{what} {v!r}: must be a finite number >= 0.")
        if not sep:
            out.update(dict.fromkeys(classes, x))
        else:
            out[name.strip()] = x
    return out


def check_out_dir(inputs, out: Path, names) -> list[Path]:
    """Refuse an output folder that is an input folder or would replace an input file."""
    for i in inputs:
        if Path(i).is_dir() and Path(i).resolve() == out.resolve():
            raise MicrosegError(f"--out {out} is an input folder; choose another folder.")
    files = [out / f"{n}.csv" for n in names] + [out / f"{n}.csv.json" for n in names]
    files.append(out / WORKBOOK)
    check_outputs([i for i in inputs if Path(i).is_file()], [("--out", f) for f in files])
    return files


def run(args) -> int:
    """Read the inputs, compute the study, write the tables and print the pooled summary."""
    out = Path(args.out)
    names = list(STUDY_TABLES) + (["hardening"] if args.thickness else [])
    if not args.inputs and not args.pair:
        raise MicrosegError("Give input folders or tables, or --pair IMAGE LABELS.")
    if not args.thickness and (args.alpha or args.alpha_sd or args.thickness_sd):
        raise MicrosegError("--alpha, --alpha-sd and --thickness-sd need --thickness NM.")
    inputs = [*args.inputs, *(f for pair in args.pair for f in pair)]
    check_out_dir(inputs, out, names)
    study = study_from_inputs(args.inputs, pairs=args.pair, pixel_size_nm=args.pixel_size,
                              size_column=args.size, conf=args.conf, seed=args.seed,
                              n_boot=args.n_boot, thickness_nm=args.thickness or None)
    tables = study.to_tables()
    hard = None
    if args.thickness:
        from ..core.measure.hardening import HardeningParameters

        classes = [c for c in study.classes if c != "all"]
        alpha = parse_per_class(args.alpha, "--alpha", classes)
        alpha = {**HardeningParameters().alpha, **alpha} if isinstance(alpha, dict) else None
        alpha_sd = parse_per_class(args.alpha_sd, "--alpha-sd", classes) or 0.0
        hard = study_hardening(study, args.thickness, thickness_sd_nm=args.thickness_sd,
                               alpha=alpha, alpha_sd=alpha_sd, conf=args.conf, seed=args.seed)
        tables["hardening"] = hard
    settings = {**study.settings, "thickness_nm": args.thickness,
                "thickness_sd_nm": args.thickness_sd}
    prov = stats_provenance(inputs=inputs, settings=settings, unit=study.unit)
    written = export_stats(out, tables, prov, xlsx=args.xlsx)
    print_pooled(study)
    if hard is not None and len(hard):
        for _, r in hard.iterrows():
            print(f"  hardening {r['class_name']:<24} {r['delta_sigma_mpa']:.4g} MPa "
                  f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]")
    print(f"wrote {len(written)} tables to {out} (each .csv with its .csv.json provenance)")
    return 0


def print_pooled(study) -> None:
    """One line per class: fields, objects, density and mean size with their intervals."""
    u, du = study.unit, study.density_unit
    pct = round(100 * study.settings["conf"])
    print(f"{len(study.fields)} field(s), {study.settings['area_unit']} total "
          f"{study.fields['area'].sum():.4g}; {pct} % intervals")
    for _, r in study.pooled.iterrows():
        print(f"  {r['class_name']:<16} n={int(r['count']):<7} density {r['density']:.4g} {du} "
              f"[{r['density_ci_low']:.4g}, {r['density_ci_high']:.4g}]  mean size "
              f"{r['mean_size']:.4g} {u} [{r['mean_size_ci_low']:.4g}, {r['mean_size_ci_high']:.4g}]")
    if len(study.outliers):
        print(f"  {len(study.outliers)} outlier flag(s): see outliers.csv")
