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
