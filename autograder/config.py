"""Where things are, and the nbgrader configuration every command starts from."""

import os
import sys
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = Path(__file__).with_name("nbgrader_config.py")
SOLUTIONS = "solutions"
COURSE = "course"


def load_config(course_root: Path, db_url: str | None = None) -> Config:
    """nbgrader_config.py plus the temporary course folder ``course_root`` and its gradebook."""
    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    config.CourseDirectory.root = str(course_root)
    config.CourseDirectory.db_url = db_url or f"sqlite:///{course_root / 'gradebook.db'}"
    config.CourseDirectory.course_id = "default_course"
    return config


def lessons(solutions: Path) -> list[str]:
    """The assignment names: the stems of ``solutions/*.ipynb``, sorted."""
    return sorted(p.stem for p in solutions.glob("*.ipynb"))


def tools_on_path() -> None:
    """Put this interpreter's bin/ first on PATH: nbgrader runs ``alembic`` and ``jupyter``
    as programs, which a venv provides only when it is activated."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
