"""The user's documentation holds up: links resolve, commands name what exists, no build-stage labels.

Checked in README.md, DEVELOPERS.md, CHANGELOG.md, docs/*.md and benchmarks/README.md:

- every relative link and image points to a file that exists, and every ``#anchor`` to a heading of
  the target file (GitHub's slug rules);
- every ``kedro run`` names registered pipelines (``--pipelines=X``, ``--pipeline=X``), existing
  environments (``--env=X``: a folder ``conf/X``) and existing parameters (``--params=a.b=v,...``,
  looked up in conf/base merged with conf/<env>, as Kedro's OmegaConfigLoader merges them);
- the scripts they mention exist.

And in every text file of the project: figures and history are labelled by date, commit, version
or measurement, never by the build stage that made them (``KedroSession`` is Kedro's own name).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from mle_hand_pipeline.settings import CONFIG_LOADER_ARGS

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TOP_DOCS = ["README.md", "DEVELOPERS.md", "CHANGELOG.md", "benchmarks/README.md"]
DOCS = sorted([*(ROOT / name for name in TOP_DOCS), *(ROOT / "docs").glob("*.md")])
# Parameters that users extend with their own keys (any tag name goes to MLflow).
OPEN_PREFIXES = ("rhd.tracking.tags.", "freihand.tracking.tags.")
DATASETS = ("rhd", "freihand")

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`]*`")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _prose_lines(path: Path):
    """(line number, line) outside fenced code blocks, inline code removed."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, INLINE_CODE.sub("", line)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation out, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = text.replace("`", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # keeps letters, digits, '_', '-', spaces
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in _headings(path):
        slug = github_slug(line)
        if slug in seen:
            seen[slug] += 1
            found.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            found.add(slug)
    return frozenset(found)


def _headings(path: Path):
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = HEADING.match(line)
        if match and not in_fence:
            yield number, match.group(2)


def test_github_slug_follows_githubs_rules():
    assert github_slug("Training: configuration, `paper`, resume") == "training-configuration-paper-resume"
    assert github_slug("Metrics, and which box normalises") == "metrics-and-which-box-normalises"
    assert github_slug("heatmap_l2 at 64 px (8 epochs)") == "heatmap_l2-at-64-px-8-epochs"
    assert github_slug("The pretrained regime (offline)") == "the-pretrained-regime-offline"


def link_problems() -> list[str]:
    problems = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for number, line in _prose_lines(doc):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                    continue
                where = f"{_rel(doc)}:{number}: link {target!r}"
                path_part, _, anchor = target.partition("#")
                file = (doc.parent / path_part).resolve() if path_part else doc
                if not file.exists():
                    problems.append(
                        f"{where}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}"
                    )
                    continue
                if anchor:
                    if file.suffix != ".md":
                        problems.append(f"{where}: an anchor into a file that is not markdown")
                    elif anchor not in anchors(file):
                        problems.append(f"{where}: no heading with anchor #{anchor} in {_rel(file)}")
    return problems


def test_every_relative_link_and_image_resolves():
    problems = link_problems()
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_documents_exist():
    for name in ["README.md", "CHANGELOG.md", "DEVELOPERS.md"]:
        assert (ROOT / name).is_file(), name
    for guide in [
        "datasets",
        "training",
        "evaluation",
        "comparison",
        "predict",
        "mlflow",
        "benchmarks",
        "results",
    ]:
        assert (ROOT / "docs" / f"{guide}.md").is_file(), guide


# ---- build-stage labels -------------------------------------------------------------------------

# Built so that this file's own source does not match it.
STAGE_LABEL = re.compile(
    r"\bsessions?[ \-]?[0-9]|\b(?:this|next|previous|last|earlier|later|that) sessions?\b", re.IGNORECASE
)
TEXT_SUFFIXES = {".md", ".py", ".yml", ".yaml", ".sh", ".toml", ".ipynb", ".txt", ".cfg", ".ini", ".json", ""}


def _project_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


def stage_label_problems() -> list[str]:
    problems = []
    for path in _project_files():
        if path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for match in STAGE_LABEL.finditer(line):
                problems.append(f"{_rel(path)}:{number}: {match.group(0)!r} in: {line.strip()[:120]}")
    return problems


def test_the_stage_label_pattern():
    word = "session"  # spelled apart, so that this file passes its own check
    assert STAGE_LABEL.search(f"measured in {word} 5")
    assert STAGE_LABEL.search(f"{word.title()}s 4-5 ran 60")
    assert STAGE_LABEL.search(f"the {word}-3 code")
    assert STAGE_LABEL.search(f"with this {word}'s code")
    assert not STAGE_LABEL.search("KedroSession.create(env=...)")
    assert not STAGE_LABEL.search("measured 2026-11-30 at commit 0fad9c7 (version 0.1.0)")


def test_no_build_stage_labels_in_the_project():
    problems = stage_label_problems()
    assert not problems, (
        "label figures and history by date, commit, version or measurement, not by build stage:\n"
        + "\n".join(problems)
    )


# ---- commands -----------------------------------------------------------------------------------


@cache
def registered_pipelines() -> frozenset[str]:
    from mle_hand_pipeline.pipeline_registry import register_pipelines

    return frozenset(register_pipelines())


@cache
def parameters(env: str | None) -> dict:
    args = {**CONFIG_LOADER_ARGS, "default_run_env": env or "local"}
    return OmegaConfigLoader(str(CONF), **args)["parameters"]


def has_parameter(params: dict, key: str) -> bool:
    if key.startswith(OPEN_PREFIXES):
        return True
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def split_params(value: str) -> list[str]:
    """Kedro's --params: comma-separated key=value pairs (commas inside brackets stay in a value)."""
    items, depth, current = [], 0, ""
    for char in value:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    return [*items, current]


def _expand(name: str) -> list[str]:
    """`train_<dataset>` stands for both datasets."""
    return [name.replace("<dataset>", d) for d in DATASETS] if "<dataset>" in name else [name]


def _logical_lines(text: str):
    """(first line number, line) with backslash continuations joined."""
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        start, text = number + 1, lines[number]
        while text.rstrip().endswith("\\") and number + 1 < len(lines):
            number += 1
            text = text.rstrip()[:-1] + " " + lines[number].strip()
        yield start, text
        number += 1


def kedro_commands(text: str):
    """(line number, argument tokens) of every `kedro run` in a document, prose and code alike."""
    for number, line in _logical_lines(text):
        for match in re.finditer(r"\bkedro run\b", line):
            rest = line[match.end() :]
            rest = re.split(r"`|\s#\s|\s&&\s|;|\s\|\s", rest)[0]
            try:
                tokens = shlex.split(rest)
            except ValueError:
                tokens = [t.strip("\"'") for t in rest.split()]
            yield number, tokens


def _options(tokens: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for i, token in enumerate(tokens):
        for option in ("--pipelines", "--pipeline", "--env", "-e", "--params"):
            if token.startswith(option + "="):
                found.setdefault(option, []).append(token[len(option) + 1 :])
            elif token == option and i + 1 < len(tokens):
                found.setdefault(option, []).append(tokens[i + 1])
    return found


def command_problems() -> list[str]:
    problems = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for number, tokens in kedro_commands(doc.read_text(encoding="utf-8")):
            where = f"{_rel(doc)}:{number}: kedro run {' '.join(tokens)}"
            options = _options(tokens)
            for value in options.get("--pipelines", []) + options.get("--pipeline", []):
                for name in (n for item in value.split(",") for n in _expand(item)):
                    if name not in registered_pipelines():
                        problems.append(f"{where}: no pipeline {name!r}")
            envs = options.get("--env", []) + options.get("-e", [])
            for env in envs:
                if not (CONF / env).is_dir():
                    problems.append(f"{where}: no environment conf/{env}")
            env = envs[-1] if envs and (CONF / envs[-1]).is_dir() else None
            for value in options.get("--params", []):
                for item in split_params(value):
                    if "=" not in item:
                        problems.append(f"{where}: {item!r} is not key=value")
                        continue
                    for key in _expand(item.split("=", 1)[0].strip()):
                        if not has_parameter(parameters(env), key):
                            conf = "conf/base" + (f" + conf/{env}" if env else "")
                            problems.append(f"{where}: no parameter {key!r} in {conf}")
    return problems


def test_commands_name_existing_pipelines_environments_and_parameters():
    problems = command_problems()
    assert not problems, "commands that would not run as written:\n" + "\n".join(problems)


def test_the_command_parser():
    line = (
        ".venv/bin/kedro run --pipelines=compare_rhd "
        '--params="rhd.compare.methods=mle+integral,rhd.compare.seeds=0+1"  # two methods'
    )
    (tokens,) = [t for _, t in kedro_commands(line)]
    assert _options(tokens) == {
        "--pipelines": ["compare_rhd"],
        "--params": ["rhd.compare.methods=mle+integral,rhd.compare.seeds=0+1"],
    }
    assert split_params("a.b=[1, 2],c={x: 1, y: 2},d=3") == ["a.b=[1, 2]", "c={x: 1, y: 2}", "d=3"]
    assert has_parameter(parameters(None), "rhd.train.epochs")
    assert not has_parameter(parameters(None), "rhd.train.epoch")
    assert has_parameter(parameters(None), "rhd.tracking.tags.anything")


SCRIPT = re.compile(
    r"(?<![\w/.])((?:scripts|benchmarks|notebooks|\.ci)/[\w.\-/]+\.(?:sh|py|ipynb)|\.ci/run)\b"
)


def test_the_scripts_the_documents_mention_exist():
    problems = []
    for doc in DOCS:
        if not doc.exists():
            continue
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            for script in SCRIPT.findall(line):
                if not (ROOT / script).exists():
                    problems.append(f"{_rel(doc)}:{number}: no file {script}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", ["predict", "export-onnx"])
def test_the_cli_commands_the_documents_use_exist(command):
    cli = (ROOT / "src" / "mle_hand_pipeline" / "cli.py").read_text(encoding="utf-8")
    assert f'"{command}"' in cli
    assert any(f"mle-hand {command}" in doc.read_text(encoding="utf-8") for doc in DOCS if doc.exists())
