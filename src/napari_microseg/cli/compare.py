"""``microseg compare``: two conditions (studies) compared, with intervals and distribution tests."""

from __future__ import annotations

from pathlib import Path

from ..core.stats import compare_studies, export_stats, stats_provenance, study_from_inputs
from .stats import add_study_options, check_out_dir, print_pooled


def register(sub) -> None:
    """Add the ``compare`` subcommand."""
    p = sub.add_parser(
        "compare",
        help="compare two conditions: density and size differences with intervals, KS/AD tests",
        description="Compare condition B with condition A. A and B are each a batch output folder, "
        "a folder of measure outputs or one measure table. Writes densities.csv (B - A and B / A "
        "with intervals), sizes.csv (mean and median size differences, Kolmogorov-Smirnov and "
        "Anderson-Darling tests) and the pooled table of each study.",
    )
    p.add_argument("a", help="condition A (the reference)")
    p.add_argument("b", help="condition B")
    add_study_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Build both studies, compare them, write the tables and print the differences."""
    out = Path(args.out)
    names = ["densities", "sizes", "pooled_a", "pooled_b"]
    check_out_dir([args.a, args.b], out, names)
    kw = {"size_column": args.size, "conf": args.conf, "seed": args.seed, "n_boot": args.n_boot}
    a, b = study_from_inputs([args.a], **kw), study_from_inputs([args.b], **kw)
    res = compare_studies(a, b, seed=args.seed, conf=args.conf, n_boot=args.n_boot,
                          labels=(str(args.a), str(args.b)))
    tables = {**res, "pooled_a": a.pooled, "pooled_b": b.pooled}
    prov = stats_provenance(inputs=[args.a, args.b], settings={**a.settings, "a": str(args.a),
                                                               "b": str(args.b)}, unit=a.unit)
    written = export_stats(out, tables, prov, xlsx=args.xlsx)
    for label, s in (("A", a), ("B", b)):
        print(f"{label}: {args.a if label == 'A' else args.b}")
        print_pooled(s)
    print("B - A:")
    sizes = res["sizes"].set_index("class_name") if len(res["sizes"]) else None
    for _, r in res["densities"].iterrows():
        line = (f"  {r['class_name']:<16} density {r['difference']:+.4g} {a.density_unit} "
                f"[{r['difference_ci_low']:+.4g}, {r['difference_ci_high']:+.4g}], "
                f"ratio {r['ratio']:.3g} [{r['ratio_ci_low']:.3g}, {r['ratio_ci_high']:.3g}]")
        if sizes is not None and r["class_name"] in sizes.index:
            s = sizes.loc[r["class_name"]]
            line += (f"; mean size {s['mean_difference']:+.4g} {a.unit} "
                     f"[{s['mean_difference_ci_low']:+.4g}, {s['mean_difference_ci_high']:+.4g}], "
                     f"KS p={s['ks_pvalue']:.3g}, AD p={s['ad_pvalue']:.3g}")
        print(line)
    print(f"wrote {len(written)} tables to {out} (each .csv with its .csv.json provenance)")
    return 0
