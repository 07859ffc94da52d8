"""Shrinks fuzz/corpus/<target>/ to a byte budget, keeping the inputs that cover the most
coverage edges per byte (greedy), so the committed corpus stays small.

    python3 fuzz/minimize.py <target> <budget_bytes>

Runs the target's libFuzzer binary once in merge mode to learn which edges each input
covers (its control file), then keeps inputs by new edges per byte until the budget is
used. Build the targets first (cargo fuzz build -O -a).
"""
import os, shutil, subprocess, sys, tempfile

target, budget = sys.argv[1], int(sys.argv[2])
here = os.path.dirname(os.path.abspath(__file__))
binary = os.path.join(here, "target/x86_64-unknown-linux-gnu/release", target)
corpus = os.path.join(here, "corpus", target)
tmp = tempfile.mkdtemp()
control = os.path.join(tmp, "control")
out = os.path.join(tmp, "out")
os.mkdir(out)
subprocess.run(["nice", "-n", "19", binary, "-merge=1", "-use_counters=0",
                "-rss_limit_mb=512", "-malloc_limit_mb=256", "-timeout=30",
                "-merge_control_file=" + control, out, corpus],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
lines = open(control).read().split("\n")
n = int(lines[0])
files = lines[2:2 + n]
cov = {}
for line in lines[2 + n:]:
    parts = line.split()
    if parts and parts[0] == "COV":
        cov[int(parts[1])] = set(parts[2:])
chosen, seen, used = [], set(), 0
sizes = {i: os.path.getsize(files[i]) for i in cov}
while True:
    best, score = None, 0.0
    for i, edges in cov.items():
        new = len(edges - seen)
        if new and used + sizes[i] <= budget:
            s = new / (sizes[i] + 64)
            if s > score:
                best, score = i, s
    if best is None:
        break
    chosen.append(best)
    seen |= cov.pop(best)
    used += sizes[best]
keep = {os.path.basename(files[i]) for i in chosen}
for name in os.listdir(corpus):
    if name not in keep:
        os.remove(os.path.join(corpus, name))
all_edges = set().union(*cov.values(), seen) if cov else seen
print(f"{target}: kept {len(keep)} inputs, {used} bytes, {len(seen)} of {len(all_edges)} edges")
shutil.rmtree(tmp)
