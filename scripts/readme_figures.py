#!/usr/bin/python3
"""Keeps the README's figures and sample output true: nothing in them is typed by hand.

    /usr/bin/python3 scripts/readme_figures.py            # regenerate README.md in place
    /usr/bin/python3 scripts/readme_figures.py --check    # exit 1 if README.md is out of date

The README marks what this script owns:
- `<!-- fig:NAME -->value<!-- /fig -->`: a figure copied from BENCHMARKS.md (a benchmark run's
  tables), looked up by table number, row and column (FIGURES below);
- a block between `<!-- sample:NAME -->` and `<!-- /sample -->`: output of a real run of the demo,
  of a gst-launch-1.0 one-liner or of the Python example (SAMPLES below).

--check compares figures exactly and runs the programs again: a sample must be what they print
now, with numbers that may differ between machines (timings, confidences, box corners) compared
within a tolerance, so a wording or layout change the README did not follow fails.

The plugin and the demo are taken from target/release unless ASYNCDETECT_PLUGIN_DIR and
ASYNCDETECT_DETECT_FILE say otherwise (the test suite passes its own builds).
"""

import functools
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")
CLIP = os.path.join(ROOT, "target", "media", "bikes.mp4")

# name: (table number, row (first cell starts with it; "min"/"max": over all rows), column, format)
FIGURES = {
    "preprocess-i420": ("3", "I420", "convert + scale p50", "{} ms"),
    "overlay-i420-p50": ("5", "I420", "p50", "{} ms"),
    "overlay-i420-p99": ("5", "I420", "p99", "{} ms"),
    "memory-hour-frames": ("10", "first", "frames", "{:,}"),
    "memory-hour-inferred": ("10", "first", "inferred", "{:,}"),
    "memory-hour-growth": ("10", "first", "growth (KiB)", "{} KiB"),
    "memory-files": ("10", "one shared session (default)", "of which files (code, built-in model)", "{} MiB"),
    "memory-first-stop": ("10", "one shared session (default)", "after the first stop", "{} MiB"),
    "memory-last-stop": ("10", "one shared session (default)", "after the last stop", "{} MiB"),
    "memory-mmap-threshold": ("10", "one shared session, `MALLOC_MMAP_THRESHOLD_", "after the last stop", "{} MiB"),
    "memory-arena-max": ("10", "one shared session, `MALLOC_ARENA_MAX", "after the last stop", "{} MiB"),
    "memory-trim-min": ("10", "min", "malloc_trim took (ms)", "{}"),
    "memory-trim-max": ("10", "max", "malloc_trim took (ms)", "{} ms"),
    "cameras-fps": ("12", "shared instance, default settings", "delivered fps per stream (min / mean)", "{} fps"),
    "cameras-shared-memory": ("12", "shared instance, default settings", "resident MiB", "{} MiB"),
    "cameras-separate-memory": ("12", "a session per camera", "resident MiB", "{} MiB"),
    "mqtt-latency": ("14", "broker up", "publish latency p50 / p99 (ms)", "{} ms"),
    "mqtt-outage-events": ("14", "broker down", "events published", "{}"),
    "openvino-nanodet": ("15", "NanoDet", "OpenVINO / CPU", "{}"),
    "openvino-ssd": ("15", "SSD", "OpenVINO / CPU", "{}"),
    "remote-fps": ("16", "first", "delivered fps per camera (min / mean)", "{}"),
    "remote-ratio": ("16", "first", "total / plain loop", "{}"),
    "remote-lost": ("16", "first", "frames lost (all cameras)", "{}"),
    "remote-recovery": ("16", "first", "seconds from the server's return to the first new result", "{} s"),
}

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def tables_of(markdown):
    """{table number: [(header cells, [row cells])]} for every `### N.` section."""
    tables, number, current = {}, None, None
    for line in markdown.splitlines():
        heading = re.match(r"### (\d+)\.", line)
        if heading:
            number, current = heading.group(1), None
            tables.setdefault(number, [])
        elif line.startswith("### ") or line.startswith("## "):
            number, current = None, None
        elif number and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = (cells, [])
                tables[number].append(current)
            elif not all(set(c) <= set("-:") for c in cells):
                current[1].append(cells)
        else:
            current = None
    return tables


def figure(tables, name):
    number, row, column, form = FIGURES[name]
    for header, rows in tables.get(number, []):
        if column not in header:
            continue
        index = header.index(column)
        if row == "first":
            values = [rows[0][index]]
        elif row in ("min", "max"):
            numbers = [float(r[index]) for r in rows]
            value = min(numbers) if row == "min" else max(numbers)
            values = [next(r[index] for r in rows if float(r[index]) == value)]
        else:
            values = [r[index] for r in rows if r[0].startswith(row)]
        if values:
            value = values[0]
            return form.format(int(value)) if form == "{:,}" else form.format(value)
    sys.exit("BENCHMARKS.md: no table {} with a row {!r} and a column {!r} (figure {})".format(number, row, column, name))


def plugin_dir():
    return os.environ.get("ASYNCDETECT_PLUGIN_DIR", os.path.join(ROOT, "target", "release"))


def run(command, **extra):
    environment = dict(os.environ, GST_PLUGIN_PATH=plugin_dir(), **extra)
    environment.pop("G_DEBUG", None)
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit("{} failed:\n{}{}".format(" ".join(command), done.stdout, done.stderr))
    return done.stdout + done.stderr


@functools.lru_cache(maxsize=None)
def demo_lines():
    """The demo's detection lines (offline, every frame: the same frames on every machine)."""
    program = os.environ.get("ASYNCDETECT_DETECT_FILE", os.path.join(ROOT, "target", "release", "examples", "detect_file"))
    scratch = os.path.join(ROOT, "target", "readme-figures")
    os.makedirs(scratch, exist_ok=True)
    output = run([program, CLIP, "--output", os.path.join(scratch, "annotated.mp4"), "--json", os.path.join(scratch, "d.jsonl")])
    return [line for line in output.splitlines() if re.match(r"^ +\d+\.\d+s  \S", line)]


def sample_demo():
    lines = demo_lines()
    first = next(i for i, line in enumerate(lines) if line.count("%") >= 2)
    return lines[first : first + 2]


def sample_eos_info():
    output = run(["gst-launch-1.0", "filesrc", "location=" + CLIP, "!", "decodebin", "!", "videoconvert", "!", "asyncdetect", "!", "fakesink"])
    return [line for line in output.splitlines() if "frames inferred" in line][:1]


def sample_python():
    output = run(["/usr/bin/python3", os.path.join(ROOT, "examples", "embed.py"), CLIP, "tracking=iou"])
    lines = output.splitlines()
    return [next(l for l in lines if l.startswith("message")), next(l for l in lines if l.startswith("buffer"))]


# name: (what makes it, how its lines are indented in the README, tolerance per number or None to
# compare only the words: numbers of an asynchronous run depend on the machine's speed)
SAMPLES = {
    "demo": (sample_demo, "    ", 12),
    "eos-info": (sample_eos_info, "    ", None),
    "python": (sample_python, "    ", None),
}


def words(line):
    """A line's wording: numbers masked."""
    return NUMBER.sub("#", line.strip())


def shape(line):
    """A line's layout: numbers masked and any list of objects ('person 73% #1 at 1,2 3x4, ...')
    as one token, since which objects an asynchronous run reports first depends on timing."""
    objects = re.sub(r"(?<![\w.])[a-z][a-z ]* \d+%( #\d+)?( at \d+,\d+ \d+x\d+)?", "OBJECT", line.strip())
    return words(re.sub(r"OBJECT(, OBJECT)*", "OBJECTS", objects))


def sample_matches(name, written, fresh):
    """Whether the README's lines are what the program prints now."""
    _, _, tolerance = SAMPLES[name]
    if tolerance is None:
        return len(written) == len(fresh) and all(shape(a) == shape(b) for a, b in zip(written, fresh))
    # Offline output: the README's lines must be among today's, at the same timestamps.
    today = {line.split()[0]: line for line in demo_lines()}
    for line in written:
        now = today.get(line.split()[0])
        if now is None or words(now) != words(line):
            return False
        pairs = zip(NUMBER.findall(line), NUMBER.findall(now))
        if any(abs(float(a) - float(b)) > tolerance for a, b in pairs):
            return False
    return True


def main():
    check = "--check" in sys.argv[1:]
    readme = open(README).read()
    tables = tables_of(open(BENCHMARKS).read())
    stale = []

    def replace_figure(match):
        name, old = match.group(1), match.group(2)
        new = figure(tables, name)
        if new != old:
            stale.append("figure {}: README says {!r}, BENCHMARKS.md {!r}".format(name, old, new))
        return "<!-- fig:{} -->{}<!-- /fig -->".format(name, new)

    updated = re.sub(r"<!-- fig:([\w-]+) -->(.*?)<!-- /fig -->", replace_figure, readme)
    missing = set(FIGURES) - set(re.findall(r"<!-- fig:([\w-]+) -->", readme))

    def replace_sample(match):
        name, body = match.group(1), match.group(2)
        make, indent, _ = SAMPLES[name]
        fresh = make()
        written = [line[len(indent) :] for line in body.strip("\n").splitlines() if line.strip()]
        if not sample_matches(name, written, fresh):
            stale.append("sample {}: README has\n  {}\nthe program prints\n  {}".format(name, "\n  ".join(written), "\n  ".join(fresh)))
            written = fresh
        elif not check:
            written = fresh
        return "<!-- sample:{} -->\n\n{}\n\n<!-- /sample -->".format(name, "\n".join(indent + line for line in written))

    updated = re.sub(r"<!-- sample:([\w-]+) -->\n(.*?)<!-- /sample -->", replace_sample, updated, flags=re.S)
    missing |= set(SAMPLES) - set(re.findall(r"<!-- sample:([\w-]+) -->", readme))
    if missing:
        stale.append("README.md has no place for: " + ", ".join(sorted(missing)))

    if check:
        if stale:
            print("README.md is out of date (run /usr/bin/python3 scripts/readme_figures.py):\n" + "\n".join(stale))
            sys.exit(1)
        print("README.md: {} figures and {} samples up to date".format(len(FIGURES), len(SAMPLES)))
    else:
        open(README, "w").write(updated)
        print("README.md: {} figures and {} samples written; {} had changed".format(len(FIGURES), len(SAMPLES), len(stale)))


if __name__ == "__main__":
    main()
