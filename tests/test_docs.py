"""README.md and docs/*.md: links resolve, and the code they name exists.

* every relative Markdown link (``[text](path#anchor)``) points to an existing file and,
  with an anchor, to a heading of that file (GitHub's heading ids);
* every repository path in docs/ (``handfit/...``, ``configs/...``, ``tests/...``,
  ``benchmarks/...``) exists;
* every dotted name in backticks in docs/ that starts with a handfit module or class
  (``losses.box_size``, ``handfit.models.dhpe.DHPE``, ``MeshParams.initial``) or a config section
  (``loss.tau``, ``config.refine.steps``) resolves to a module attribute or to a field of
  ``configs/default.py``.
"""

from __future__ import annotations

import glob
import importlib
import os
import re

import pytest

from configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKDOWN = [os.path.join(ROOT, "README.md"), *DOCS]

# Short names the docs use (modules, and classes named without their module), and what each
# stands for.
MODULES = {
    **{
        m: f"handfit.{m}"
        for m in (
            "augment",
            "checkpoint",
            "evaluate",
            "geometry",
            "losses",
            "mano",
            "metrics",
            "objective",
            "params",
            "refine",
            "render",
            "safe_pickle",
            "skeleton",
            "train",
            "viz",
        )
    },
    **{m: f"handfit.models.{m}" for m in ("cpm", "dhpe", "heads", "resnet")},
    **{
        m: f"handfit.data.{m}"
        for m in (
            "backgrounds",
            "builders",
            "dexter_object",
            "example",
            "freihand",
            "pipeline",
            "rhd",
            "stb",
            "synthetic",
        )
    },
    "models": "handfit.models",
    "handfit": "handfit",
    # classes named without their module
    "DHPE": "handfit.models.dhpe.DHPE",
    "DHPEOutput": "handfit.models.dhpe.DHPEOutput",
    "Evidence": "handfit.refine.Evidence",
    "HandModel": "handfit.mano.HandModel",
    "MeshParams": "handfit.params.MeshParams",
    "RefineConfig": "handfit.refine.RefineConfig",
    "SyntheticSpec": "handfit.data.synthetic.SyntheticSpec",
}
CONFIG = default.get_config()
FILE_EXTENSIONS = {"py", "md", "json", "png", "jpg", "bmp", "txt", "mat", "pickle", "pkl", "npz"}

FENCE = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
PATH = re.compile(r"\b(?:handfit|configs|tests|benchmarks)/[\w./+-]*\w")
DOTTED = re.compile(r"`(?:--)?([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+)(?:[=(][^`]*)?`")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks (their lines are neither links nor headings)."""
    return FENCE.sub("", text)


def anchors(text: str) -> set[str]:
    """GitHub's ids of the headings of a Markdown ``text`` (lower case, punctuation dropped,
    spaces to '-', repeats numbered ``-1``, ``-2``...)."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(_prose(text)):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(text: str, directory: str) -> list[str]:
    """The relative links of Markdown ``text`` (a file in ``directory``) that do not resolve."""
    bad = []
    for target in LINK.findall(INLINE_CODE.sub("", _prose(text))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = os.path.normpath(os.path.join(directory, path)) if path else None
        if file is not None and not os.path.exists(file):
            bad.append(f"{target}: no file {file}")
            continue
        if anchor:
            with open(file or os.devnull) as f:
                own = text if file is None else f.read()
            if anchor not in anchors(own):
                bad.append(f"{target}: no heading with id {anchor!r}")
    return bad


def missing_paths(text: str) -> list[str]:
    """Repository paths named in ``text`` that do not exist."""
    return sorted({p for p in PATH.findall(text) if not os.path.exists(os.path.join(ROOT, p))})


def _resolve_attr(dotted: str) -> bool:
    """Whether ``handfit.x.y.Z.attr`` is a module or an attribute reachable from one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for i, name in enumerate(parts[cut:], cut + 1):
            if hasattr(obj, name):
                obj = getattr(obj, name)
            else:  # a dataclass field without a default is no class attribute
                return i == len(parts) and name in getattr(obj, "__dataclass_fields__", {})
        return True
    return False


def _is_config_field(dotted: str) -> bool:
    node = CONFIG
    for name in dotted.removeprefix("config.").split("."):
        if not hasattr(node, "keys") or name not in node.keys():
            return False
        node = node[name]
    return True


def unknown_names(text: str) -> list[str]:
    """Dotted names in backticks that start with a handfit module or a config section and
    are neither a module attribute nor a field of configs/default.py."""
    bad = []
    for name in sorted(set(DOTTED.findall(_prose(text)))):
        if name.rsplit(".", 1)[1] in FILE_EXTENSIONS:  # a file name such as FreiHAND's eval.py
            continue
        head, _, rest = name.removeprefix("config.").partition(".")
        is_section = head in CONFIG.keys()
        if head not in MODULES and not is_section:
            continue
        as_attr = head in MODULES and _resolve_attr(f"{MODULES[head]}.{rest}")
        if not as_attr and not (is_section and _is_config_field(name)):
            bad.append(name)
    return bad


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_docs_exist():
    names = {os.path.basename(p) for p in DOCS}
    assert {"method.md", "datasets.md", "conventions.md"} <= names


@pytest.mark.parametrize("path", MARKDOWN, ids=os.path.basename)
def test_links_resolve(path):
    assert broken_links(_read(path), os.path.dirname(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_named_paths_exist(path):
    assert missing_paths(_read(path)) == []


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_named_code_and_config_fields_exist(path):
    assert unknown_names(_read(path)) == []


def test_readme_links_every_doc():
    readme = _read(os.path.join(ROOT, "README.md"))
    for path in DOCS:
        assert f"(docs/{os.path.basename(path)})" in readme, path


def test_the_checks_catch_what_is_broken(tmp_path):
    (tmp_path / "other.md").write_text("# A title, with `code`\n\n## Scoring protocols\n")
    text = (
        "# Here\n[ok](other.md#a-title-with-code) [ok](other.md#scoring-protocols) [ok](#here)\n"
        "[web](https://example.org/x) `[not a link](nowhere.md)`\n"
        "[gone](missing.md) [bad anchor](other.md#scoring) [own](#elsewhere)\n"
        "```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(text, str(tmp_path)) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#scoring: no heading with id 'scoring'",
        "#elsewhere: no heading with id 'elsewhere'",
    ]
    assert missing_paths("see handfit/losses.py and handfit/nope.py") == ["handfit/nope.py"]
    assert unknown_names(
        "`losses.box_size` `losses.no_such` `loss.tau` `loss.no_such` `config.refine.steps` "
        "`--config.loss.tau=3` `handfit.models.dhpe.DHPE.features` `dhpe.DHPE.nothing` "
        "`augment.per_seed` `augment.generate` `other.thing` `eval.py` `DHPEOutput.joints3d` "
        "`DHPEOutput.joints4d`"
    ) == ["DHPEOutput.joints4d", "dhpe.DHPE.nothing", "loss.no_such", "losses.no_such"]
