"""The repository keeps its own rules: every citation of docs/ resolves, tests and product stay
apart, and every test is found by its name.

- Every `docs/<file>.md §N` (or §N.M) in the tracked sources, tests and README names a heading of
  that file, and every test name that cites a seed's section (``seed003_2_6``, ``seed001_theorem3``)
  names a heading of docs/math.md for that seed and section; every test docs/ names exists.
- No test module imports another test module; no benchmark imports the property suite; no module
  imports a private name (``_name``) from another top-level package; no test is made through
  ``globals()``, so each is found by ``grep "def test_<name>"``.
- The README's protocol table lists every attribute the target protocol documents.

These read the checkout (README.md, docs/, benchmarks/); an installed copy of the suite has none
of them, and the module is skipped there with that reason.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(not (ROOT / "docs" / "math.md").exists() or not (ROOT / "benchmarks").is_dir(),
                                reason="not a checkout of the repository: its README, docs/ and benchmarks/ are "
                                       "not installed with the suite")
PACKAGES = ("reference", "ddpm_verify", "properties", "benchmarks")
CITATION = re.compile(r"docs/(\w+)\.md((?:[ ,]*(?:and )?§\d+(?:\.\d+)*(?:-§\d+(?:\.\d+)*)?)+)")


def _sources(*suffixes) -> list[Path]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*") if p.suffix in suffixes]
    return files + ([ROOT / "README.md"] if ".md" in suffixes else []) + (
        sorted((ROOT / "docs").glob("*.md")) if ".md" in suffixes else [])


def _headings(doc: str) -> list[str]:
    return [line.lstrip("#").strip() for line in (ROOT / "docs" / f"{doc}.md").read_text().splitlines()
            if line.startswith("#")]


def _numbered(headings: list[str]) -> set[str]:
    """'6' for '6. The reverse model ...', '6.3' for '6.3 The Gaussian KL'."""
    return {m.group(1) for h in headings if (m := re.match(r"(\d+(?:\.\d+)*)\.?\s", h))}


def test_every_docs_citation_names_a_heading():
    missing = []
    for path in _sources(".py", ".md"):
        for m in CITATION.finditer(path.read_text()):
            doc = m.group(1)
            if not (ROOT / "docs" / f"{doc}.md").exists():
                missing.append(f"{path.relative_to(ROOT)}: docs/{doc}.md does not exist")
                continue
            have = _numbered(_headings(doc))
            for section in re.findall(r"§(\d+(?:\.\d+)*)", m.group(2)):
                if section not in have:
                    missing.append(f"{path.relative_to(ROOT)}: docs/{doc}.md §{section}")
    assert not missing, f"citations of docs/ with no such heading: {sorted(set(missing))}"


def _seed_label(rest: str) -> str | None:
    """The section a test name cites after 'seedNNN_': '2_6_...' -> '2.6', 'theorem3_...' ->
    'theorem 3', 'm_t_...' -> 'm_t'; None when it cites the seed only."""
    if m := re.match(r"((?:\d+_)*\d+)(?:_|$)", rest):
        return m.group(1).replace("_", ".")
    if m := re.match(r"theorem(\d+)", rest):
        return f"theorem {m.group(1)}"
    return "m_t" if rest.startswith("m_t") else None


def test_every_seed_section_a_test_name_cites_is_a_heading():
    headings = _headings("math")
    names = [n for p in (ROOT / "properties").glob("test_*.py")
             for n in re.findall(r"^def (test_\w+)", p.read_text(), flags=re.M)]
    cited = [(n, m.group(1), _seed_label(m.group(2))) for n in names if (m := re.search(r"seed(\d{3})_?(\w*)", n))]
    assert cited, "no test names a seed: the rule would check nothing"
    missing = [(n, seed, label) for n, seed, label in cited
               if not any(f"Seed {seed}" in h and (label is None or label in h) for h in headings)]
    assert not missing, f"test names citing a seed section with no heading in docs/math.md: {missing}"


def test_every_test_the_docs_name_exists():
    defined = {n for p in (ROOT / "properties").glob("test_*.py")
               for n in re.findall(r"^def (test_\w+)", p.read_text(), flags=re.M)}
    named = {n for doc in (ROOT / "docs").glob("*.md")
             for n in re.findall(r"\b(test_\w+)\b(?!\.py)", doc.read_text())}
    assert named, "docs/ name no test: the rule would check nothing"
    assert not named - defined, f"tests named in docs/ that do not exist: {sorted(named - defined)}"


def _imports(path: Path):
    """(module, names) of every import in `path`: names is [] for `import module`."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]


def test_no_test_module_imports_a_test_module_and_no_benchmark_imports_the_suite():
    offences = []
    for path in (ROOT / "properties").rglob("*.py"):
        for module, names in _imports(path):
            parts = module.split(".")
            if parts[0] == "properties" and (any(p.startswith("test_") for p in parts)
                                             or any(n.startswith("test_") for n in names)):
                offences.append(f"{path.relative_to(ROOT)} imports {module} {names}")
    for path in (ROOT / "benchmarks").glob("*.py"):
        offences += [f"{path.relative_to(ROOT)} imports {m}" for m, _ in _imports(path) if m.split(".")[0] == "properties"]
    assert not offences, offences


def test_no_module_imports_a_private_name_of_another_package():
    offences = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for module, names in _imports(path):
                top = module.split(".")[0]
                if top == pkg or top not in PACKAGES:
                    continue
                private = [p for p in module.split(".")[1:] if p.startswith("_") and p != "__init__"] + [
                    n for n in names if n.startswith("_")]
                if private:
                    offences.append(f"{path.relative_to(ROOT)}: from {module} import {names}")
    assert not offences, offences


def test_every_test_is_defined_by_name():
    """No test module makes tests through globals() (each is found by grep "def test_<name>")."""
    offences = [p.name for p in (ROOT / "properties").glob("test_*.py")
                if any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "globals"
                       for n in ast.walk(ast.parse(p.read_text())))]
    assert not offences, offences


def test_the_readme_protocol_table_lists_every_documented_attribute():
    """Every attribute the target protocol documents (`adapters.protocol`'s docstring) is in the
    README's protocol table."""
    from ddpm_verify.adapters import protocol

    documented = set(re.findall(r"^``(\w+)(?:\(\))?``\s+[ROMS]\s", protocol.__doc__, flags=re.M))
    readme = (ROOT / "README.md").read_text()
    missing = sorted(a for a in documented if f"`{a}" not in readme)
    assert documented and not missing, f"attributes missing from the README's protocol table: {missing}"
