"""This CPU's int8 dot-product peak: independent AVX-512 VNNI ``vpdpbusd`` in a loop, on zmm and on
ymm, one copy per core at once, so that the int8 kernels' rates (``bench --profile``) can be read
against what the machine issues (multiply-adds per second, 4 a byte lane).

    python benchmarks/vnni_peak.py [--copies 2] [--out benchmarks/results/vnni_peak.json]

Needs gcc and a CPU with AVX-512 VNNI (it says so and exits otherwise).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent

SOURCE = r"""
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#define ITERATIONS 200000000L
#define CHAINS 12  /* independent accumulators: more than the instruction's latency × issue rate */
int main(void) {
    VEC acc[CHAINS]; VEC x = SET1(3), y = SET1(5);
    for (int i = 0; i < CHAINS; i++) acc[i] = ZERO();
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long n = 0; n < ITERATIONS; n++) {
        #pragma GCC unroll 12  /* the accumulators in registers */
        for (int i = 0; i < CHAINS; i++) acc[i] = DOT(acc[i], x, y);
        __asm__ volatile("" : "+v"(x));  /* keeps the loop from being folded */
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
    int sum = 0; for (int i = 0; i < CHAINS; i++) sum += FIRST(acc[i]);
    printf("%.6f %d\n", ITERATIONS * CHAINS / s, sum);
    return 0;
}
"""

WIDTHS = {
    # name: (bytes per vector, macros)
    "zmm": (64, "-DVEC=__m512i -DSET1=_mm512_set1_epi8 -DZERO=_mm512_setzero_si512 -DDOT=_mm512_dpbusd_epi32 -DFIRST=_mm512_cvtsi512_si32"),
    "ymm": (32, "-DVEC=__m256i -DSET1=_mm256_set1_epi8 -DZERO=_mm256_setzero_si256 -DDOT=_mm256_dpbusd_epi32 -DFIRST=_mm256_cvtsi256_si32"),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--copies", type=int, default=os.cpu_count(), help="copies run at once, one per core (default: every core)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "vnni_peak.json")
    args = p.parse_args()
    if "avx512_vnni" not in Path("/proc/cpuinfo").read_text():
        print("error: this CPU has no AVX-512 VNNI (avx512_vnni in /proc/cpuinfo)", file=sys.stderr)
        return 3
    from tvmc_mobilenet.files import write_json

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (width, macros) in WIDTHS.items():
            source, binary = Path(tmp) / "peak.c", Path(tmp) / f"peak_{name}"
            source.write_text(SOURCE)
            flags = ["-O2", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512vnni", *macros.split()]
            subprocess.run(["gcc", *flags, str(source), "-o", str(binary)], check=True, timeout=120)
            runs = [subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True) for _ in range(args.copies)]
            rates = [float(run.communicate(timeout=600)[0].split()[0]) for run in runs]
            macs = [rate * width for rate in rates]  # one multiply-add per byte lane
            results[name] = {"instructions_per_s": rates, "macs_per_s_per_core": macs, "macs_per_s_all_cores": sum(macs)}
            print(f"{name}: {sum(rates) / 1e9:.2f} G vpdpbusd/s on {args.copies} cores, {sum(macs) / 1e9:.0f} G multiply-adds/s", file=sys.stderr)
    write_json(
        args.out,
        {
            "benchmark": "vnni_peak",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
            "command": " ".join(["python", "benchmarks/vnni_peak.py", *sys.argv[1:]]),
            "copies": args.copies,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
