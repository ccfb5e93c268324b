"""Functions the lessons' solutions define, loaded from the notebooks themselves (not copied).

Runs, in notebook order and in a fresh namespace, the notebook's first code cell (its set-up:
imports, seeds, ``device``), the import statements of its other cells, and its answer cells
(nbgrader ``solution: true``); then returns the functions asked for. Nothing else runs (no
training, no plots). Fails with the names that are missing and any cell that raised.
"""

import ast
import os

import nbformat
from common import SOLUTIONS


def _imports_of(source):
    """The cell's top-level import statements, as source ("" when there are none)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return ""
    return "\n".join(ast.unparse(s) for s in body if isinstance(s, ast.Import | ast.ImportFrom))


def _is_answer_cell(cell):
    return cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution", False)


def _without_magics(source):
    """Drop IPython-only lines (``%matplotlib``, ``!pip``): plain Python runs the rest."""
    lines = source.splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def load_functions(lesson, names, folder=SOLUTIONS):
    """Return ``{name: object}`` for ``names`` defined by ``folder/<lesson>.ipynb``.

    Raises:
        FileNotFoundError: the notebook is missing.
        RuntimeError: some of ``names`` are not defined (lists the cells that failed).
    """
    path = folder / f"{lesson}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist yet: the benchmark needs the lesson")
    namespace, errors = {"__name__": f"solution_{lesson}"}, []
    saved = os.environ.get("D2LMINI_FAST")
    os.environ["D2LMINI_FAST"] = "1"  # anything the set-up cell sizes by mode stays small
    try:
        _run_cells(path, namespace, errors)
    finally:
        if saved is None:
            del os.environ["D2LMINI_FAST"]
        else:
            os.environ["D2LMINI_FAST"] = saved
    missing = [n for n in names if n not in namespace]
    if missing:
        raise RuntimeError(f"{path.name} does not define {missing} in its answer cells"
                           + (f"; failing cells: {errors}" if errors else ""))
    return {n: namespace[n] for n in names}


def _run_cells(path, namespace, errors):
    """Execute the set-up cell, other cells' imports and the answer cells into ``namespace``."""
    code = [(i, c) for i, c in enumerate(nbformat.read(path, as_version=4).cells)
            if c.cell_type == "code"]
    for rank, (index, cell) in enumerate(code):
        source = _without_magics(cell.source)
        if rank > 0 and not _is_answer_cell(cell):
            source = _imports_of(source)
        try:
            exec(compile(source, f"{path.name}[cell {index}]", "exec"), namespace)
        except Exception as err:  # report every failing cell, not just the first
            errors.append(f"cell {index}: {type(err).__name__}: {err}")
