"""The printed table of a benchmark run (:func:`engine.benchmark.suite.run_benchmark`'s results)."""
from __future__ import annotations

from .suite import STAGES
from .timing import PEAK_LAYER

__all__ = ["ratios_text", "print_table"]


def ratios_text(compare: dict) -> str:
    """``stage 2.10x (1.95-2.21), ...``: per stage the ratio of the medians and the range of the paired ratios."""
    return ", ".join(f"{stage} {ratio:.2f}x ({lo:.2f}-{hi:.2f})"
                     for (stage, ratio), (lo, hi) in zip(compare["ratios"].items(), compare["ratio_ranges"].values()))


def _runner_lines(res_key: str, res: dict, cols: list[str], width: dict, ks: list[int]) -> None:
    entries = {name: e for name, e in res.items() if not name.startswith("compare")}
    for name, e in entries.items():
        vals = " ".join(f"{e[c + '_ms']:{width[c]}.1f}" if (c + "_ms") in e else " " * width[c] for c in cols)
        am = " ".join(f"{e['amortised_k' + str(k) + '_ms']:8.1f}" if f"amortised_k{k}_ms" in e
                      else f"{e.get('key_step_ms', 0):8.1f}" for k in ks)
        mem = " ".join(f"{'-' if e.get(k) is None else str(round(e[k])):>7}" for k in ("peak_mem_mb", "inference_mem_mb"))
        print(f"{res_key:>10} {name:>13} {vals} {am} {mem}")
    for name, e in entries.items():
        if e.get("faults"):
            print(f"{'':>10} {name:>13} minor page faults per call: " +
                  ", ".join(f"{s} {round(n)}" for s, n in e["faults"].items()))
    for name, e in entries.items():
        if "gflops" in e:
            pct = e.get("pct_of_conv_peak", {})
            gf = ", ".join(f"{s} {e['gflops'][s]:.1f} GFLOP @ {e['gflop_per_s'].get(s, 0):.0f} GFLOP/s" +
                           (f" ({pct[s]:.0f} %)" if s in pct else "") for s in e["gflops"])
            print(f"{'':>10} {name:>13} {gf}")


def _compare_lines(res: dict, variants: list[str]) -> None:
    if "compare" in res:
        c = res["compare"]
        a, b = variants
        print(f"{'':>10} {a}/{b} time ratios: " + ratios_text(c) +
              "; amortised " + ", ".join(f"{k} {v:.2f}x" for k, v in c["amortised_ratios"].items()) +
              (f"; peak memory {c['peak_mem_ratio']:.2f}x (inference alone {c['inference_mem_ratio']:.2f}x)"
               if "peak_mem_ratio" in c else ""))
        print(f"{'':>10} largest output difference: " + ", ".join(f"{k} {v:.3g}" for k, v in c["difference"].items()))
    if "compare_methods" in res:
        c = res["compare_methods"]
        a, b = c["runners"]
        print(f"{'':>10} {a}/{b} time ratios: " + ratios_text(c) +
              "; amortised " + ", ".join(f"{k} {v:.2f}x" for k, v in c["amortised_ratios"].items()))


def print_table(results: dict, ks: list[int]) -> None:
    """Per resolution and runner: the stage medians (ms), the amortised cost for each k in ``ks``, peak
    and inference memory (MB); then the page faults, FLOP rates and comparisons; then the conv peaks
    and the data-loading times."""
    cols = [c for c in STAGES if any(f"{c}_ms" in e for res in results["resolutions"].values() for e in res.values())]
    width = {c: max(9, len(c)) for c in cols}
    print(f"\nthreads {results['threads']}, batch {results['batch']}, device {results['device']}, "
          f"median of {results['repeats']} runs (ms); malloc: {results.get('malloc', 'glibc default')}")
    print(f"{'resolution':>10} {'variant':>13} " + " ".join(f"{c:>{width[c]}}" for c in cols) + " " +
          " ".join(f"{'k=' + str(k):>8}" for k in ks) + f" {'peakMB':>7} {'inferMB':>7}")
    for res_key, res in results["resolutions"].items():
        _runner_lines(res_key, res, cols, width, ks)
        _compare_lines(res, results["variants"])
    peaks = results.get("conv_peak_gflop_per_s")
    if peaks:
        print(f"(%: of the conv peak in the variant's precision: a {PEAK_LAYER['channels']}->{PEAK_LAYER['channels']} "
              f"3x3 convolution at {PEAK_LAYER['size'][0]}x{PEAK_LAYER['size'][1]} runs at "
              f"{peaks['float32']:.0f} GFLOP/s float32, {peaks['bfloat16']:.0f} bfloat16 here; "
              "FLOPs are the direct convolutions', so Winograd layers can pass 100 %)")
    dl = results.get("data_loading")
    if dl:
        print("data loading (not in the model timings): " +
              ", ".join(f"{k} PNG decode {v['png_decode_ms']:.1f} ms" for k, v in dl.items()))
