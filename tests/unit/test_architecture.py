"""The house rules that a parser can check: pages are thin, the engine never imports streamlit."""
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Not "pages/": Streamlit treats a folder of that name as the old auto-discovered multipage app when a
# page URL is opened directly, and then runs the page without app.py (no sidebar, file names as titles).
PAGES = ROOT / "app_pages"
# The UI libraries, the engine, the pages' own shared modules, and Python's standard library.
PAGE_IMPORTS = {"streamlit", "plotly", "pandas", "llmos_core", PAGES.name} | set(sys.stdlib_module_names)


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_pages_import_only_the_ui_libraries_and_the_engine():
    for page in sorted(PAGES.glob("*.py")):
        extra = imported_roots(page) - PAGE_IMPORTS
        assert not extra, f"{page.name} imports {sorted(extra)}: pages stay thin (no torch, no transformers, no other third-party library)"


def test_the_engine_never_imports_streamlit():
    for module in sorted((ROOT / "llmos_core").rglob("*.py")):
        assert "streamlit" not in imported_roots(module), f"{module.relative_to(ROOT)} imports streamlit"


def test_no_pages_folder_for_streamlit_to_auto_discover():
    assert not (ROOT / "pages").exists()


def test_every_page_file_is_in_the_navigation():
    app = (ROOT / "app.py").read_text()
    for page in PAGES.glob("*.py"):
        if not page.name.startswith("_"):
            assert f'"{PAGES.name}/{page.name}"' in app, f"{page.name} is not listed with st.Page in app.py"


# ---------------------------------------------------------------- the engine's own import graph

PACKAGE = ROOT / "llmos_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path, modules: set[str], everywhere: bool = False) -> set[str]:
    """The llmos_core modules a file imports when it is imported (imports inside functions are lazy: a
    deliberate way to break a cycle, so they are left out), or with `everywhere`, every import in it."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree) if everywhere else tree.body:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycles_in_the_engine():
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: module_level_imports(path, set(paths)) for name, path in paths.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, trail + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


# What a page must not do itself: the chat turn's workflow, registering a model, reading a job's files.
WORKFLOW_IN_PAGES = ("conversations.append(", "conversations.delete_message(", "conversations.update_message(",
                     "conversations.replace_last(", "catalog.register(", "segments_file")


def test_the_operations_live_in_the_use_cases_not_in_the_pages():
    for page in sorted(PAGES.glob("*.py")):
        text = page.read_text()
        for call in WORKFLOW_IN_PAGES:
            assert call not in text, f"{page.name} does {call!r} itself: call llmos_core.usecases instead"


# ---------------------------------------------------------------- docs/ARCHITECTURE.md stays true

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
FRONT_DOORS = ("llmos_core.cli", "llmos_core.api", "llmos_core.mcp", "llmos_core.usecases")
SERVICES = ("llmos_core.generation", "llmos_core.translation", "llmos_core.training")
MAX_LINES = 420   # "about 400": a module that grows past this is doing two jobs


def engine_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: module_level_imports(path, set(paths)) for name, path in paths.items()}


def under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_every_path_the_architecture_page_names_exists():
    import re

    named = set(re.findall(r"llmos_core/[\w/]+(?:\.py)?", ARCHITECTURE.read_text()))
    named |= {f"llmos_core/{p}" for p in re.findall(r"`((?:usecases|generation|translation|training|models|jobs|api)"
                                                        r"/\w+\.py)`", ARCHITECTURE.read_text())}
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, f"docs/ARCHITECTURE.md names {missing}, which do not exist: update the page"


def test_only_the_front_doors_import_the_front_doors():
    for name, targets in engine_graph().items():
        if under(name, FRONT_DOORS):
            continue
        wrong = sorted(t for t in targets if under(t, FRONT_DOORS))
        assert not wrong, f"{name} imports {wrong}: only the CLI, the API and the use cases sit on top"


def test_the_engine_does_not_start_the_front_doors():
    """The API (and MCP) sit on the engine: the process entries start them (serve, the app), never engine.py,
    not even by an import inside a function."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    wrong = sorted(t for t in module_level_imports(PACKAGE / "engine.py", modules, everywhere=True)
                   if under(t, FRONT_DOORS))
    assert not wrong, f"llmos_core.engine imports {wrong}: the front doors import the engine, not the other way"


def test_resources_do_not_import_the_services():
    for name, targets in engine_graph().items():
        if under(name, ("llmos_core.models", "llmos_core.jobs")):
            wrong = sorted(t for t in targets if under(t, SERVICES))
            assert not wrong, f"{name} imports {wrong}: models/ and jobs/ sit below generation, translation, training"


def test_no_engine_module_does_two_jobs():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}; split them by role"
