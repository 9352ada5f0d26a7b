#!/usr/bin/env python3
"""Where a RustHallows bench run's instructions go, by function: the run
single-stepped with every instruction logged (QEMU `-singlestep -d
exec,nochain`, under `-icount shift=0,sleep=off`), every PC attributed to
the guest ELF's functions or to the hypervisor, per round trip as the
difference of two runs that differ only in the round trips (the boot, the
set-up and the exit cancel out).

  profile-guest.py MANIFEST_TEMPLATE COUNT_A COUNT_B GUEST_ELF OUT_JSON
(MANIFEST_TEMPLATE has {count} where the partitions' count= goes.)
"""
import bisect
import collections
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAT = re.compile(r"Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")


def symbols(elf):
    nm = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    nm = os.path.join(nm, "lib", "rustlib", "x86_64-unknown-linux-gnu", "bin", "llvm-nm")
    out = subprocess.run([nm, "-n", "-C", "--defined-only", elf], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        p = line.split(" ", 2)
        if len(p) == 3 and p[1] in "tTwW":
            name = re.sub(r"::h[0-9a-f]{16}$", "", p[2].strip())
            for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$RF$", "&"), ("$C$", ","), ("..", "::")):
                name = name.replace(a, b)
            name = name.lstrip("_")
            syms.append((int(p[0], 16), name))
    syms.sort()
    return syms


def profile(template, count, syms, hv_base):
    work = os.path.join(ROOT, "target", "bench", "profile")
    os.makedirs(work, exist_ok=True)
    man = os.path.join(work, f"run-{count}.toml")
    with open(man, "w") as f:
        f.write(template.replace("{count}", str(count)))
    log = os.path.join(work, f"exec-{count}.log")
    hallows = os.path.join(ROOT, "target", "debug", "hallows")
    r = subprocess.run([hallows, "run", man, "--timeout", "900", "--", "-icount", "shift=0,sleep=off", "-singlestep", "-d", "exec,nochain", "-D", log],
                       cwd=ROOT, capture_output=True, text=True, timeout=1500)
    if r.returncode != 0 or "machine exit status 0" not in r.stdout + r.stderr:
        raise SystemExit(f"profile run of {count} failed:\n" + (r.stdout + r.stderr)[-3000:])
    addrs = [a for a, _ in syms]
    if not syms:
        return collections.Counter()
    by = collections.Counter()
    pcs = collections.Counter()
    with open(log, errors="replace") as f:
        for line in f:
            m = PAT.match(line)
            if m:
                pcs[int(m.group(1), 16)] += 1
    os.remove(log)
    for pc, n in pcs.items():
        if pc >= hv_base:
            by["(hypervisor, EL2)"] += n
            continue
        i = bisect.bisect_right(addrs, pc) - 1
        by[syms[i][1] if i >= 0 else "?"] += n
    return by


def main():
    template_path, a, b, elf, out = sys.argv[1:6]
    a, b = int(a), int(b)
    with open(template_path) as f:
        template = f.read()
    hv_base = 0x4020_0000  # the hypervisor's image on qemu-virt-aarch64; the guests sit below it
    profile(template, 2, [], hv_base)  # builds the guest the symbols are read from
    syms = symbols(elf)
    pa, pb = profile(template, a, syms, hv_base), profile(template, b, syms, hv_base)
    per = {k: (pb[k] - pa[k]) / (b - a) for k in set(pa) | set(pb)}
    per = {k: v for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.5}
    with open(out, "w") as f:
        json.dump({"round_trips": [a, b], "per_round_trip": per, "total": sum(per.values())}, f, indent=2)
    for k, v in per.items():
        print(f"{v:10.1f}  {k}")
    print(f"{sum(per.values()):10.1f}  total")


if __name__ == "__main__":
    main()
