"""What is unusual about a submission before it runs: duplicated, deleted or edited cells,
and grading metadata nbgrader would reject. Each note is a sentence for the report."""

import copy
from collections import Counter

from nbgrader import utils
from nbgrader.nbgraderformat import MetadataValidator, ValidationError

# English templates; the feedback page shows them in the submission's language
# (translations/zh/autograder.po)
INVALID = ("cell {cell} had invalid grading metadata ({error}); it was graded as an ordinary "
           "cell")
DUPLICATED = ("cell '{grade_id}' appears {count} times: the last copy was graded, the others "
              "ran as ordinary cells")
TEST_DELETED = "test cell '{grade_id}' was deleted: it was restored and graded"
ANSWER_DELETED = "answer cell '{grade_id}' was deleted (or lost its metadata)"
TEST_EDITED = "test cell '{grade_id}' was edited: it was restored from the source before grading"
TYPED_MARKERS = ("cell {cell} holds nbgrader's markers ({marker}), typed by the student: they "
                 "change nothing in grading")
HELPER_DELETED = "read-only cell '{grade_id}' was deleted: it was restored before grading"


def grade_ids(nb) -> list[str]:
    """The grade_id of every nbgrader cell, in order (duplicates included)."""
    return [c.metadata.nbgrader["grade_id"] for c in nb.cells
            if "grade_id" in c.metadata.get("nbgrader", {})]


def graded_order(nb) -> dict[str, int]:
    """grade_id -> position, to list graded cells in notebook order."""
    return {gid: i for i, gid in enumerate(grade_ids(nb))}


def strip_invalid_metadata(nb) -> list[str]:
    """Remove nbgrader metadata nbgrader would reject (hand-edited JSON) so the rest grades;
    a test cell losing it is restored from the source like a deleted one."""
    notes, validator = [], MetadataValidator()
    for index, cell in enumerate(nb.cells):
        if "nbgrader" not in cell.metadata:
            continue
        try:
            validator.validate_cell(cell)
        except (ValidationError, KeyError, TypeError, ValueError) as err:
            del cell.metadata["nbgrader"]
            notes.append(INVALID.format(cell=index + 1, error=err))
    return notes


def drop_duplicates(nb) -> None:
    """Keep grading metadata only on the last copy of a duplicated cell (nbgrader's choice);
    the earlier copies run as ordinary cells. nbgrader's own DeduplicateIds leaves them an
    empty ``nbgrader`` entry that later fails the whole notebook."""
    seen = set()
    for cell in reversed(nb.cells):
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in seen:
            del cell.metadata["nbgrader"]
            cell.metadata.pop("deletable", None)
            cell.metadata.pop("editable", None)
        elif gid is not None:
            seen.add(gid)


def submission_notes(nb, release) -> list[str]:
    """Duplicated, deleted and edited cells of ``nb`` compared with the student version."""
    expected = {c.metadata.nbgrader["grade_id"]: c for c in release.cells
                if "grade_id" in c.metadata.get("nbgrader", {})}
    counts = Counter(grade_ids(nb))
    notes = [DUPLICATED.format(grade_id=gid, count=n) for gid, n in counts.items() if n > 1]
    for gid, cell in expected.items():
        if gid not in counts and utils.is_grade(cell):
            notes.append(TEST_DELETED.format(grade_id=gid))
        elif gid not in counts:
            notes.append(ANSWER_DELETED.format(grade_id=gid))
    edited = {c.metadata.nbgrader["grade_id"] for c in nb.cells
              if _is_edited_test(c, expected)}
    notes += [TEST_EDITED.format(grade_id=gid) for gid in sorted(edited)]
    notes += [TYPED_MARKERS.format(cell=index + 1, marker=marker)
              for index, marker in typed_markers(nb)]
    return notes


MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "BEGIN SOLUTION", "END SOLUTION")


def typed_markers(nb) -> list[tuple[int, str]]:
    """(index, marker) of cells outside the lesson's graded cells that hold nbgrader markers
    (in an answer cell only hidden-test markers count: the solution markers belong there)."""
    found = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") or meta.get("locked"):
            continue
        allowed = ("BEGIN SOLUTION", "END SOLUTION") if meta.get("solution") else ()
        for marker in MARKERS:
            if marker in cell.source and marker not in allowed:
                found.append((index, marker))
                break
    return found


def _is_edited_test(cell, expected) -> bool:
    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
    original = expected.get(gid)
    if original is None or not utils.is_locked(original):
        return False
    try:
        return utils.compute_checksum(cell) != original.metadata.nbgrader["checksum"]
    except (KeyError, ValueError, TypeError):
        return True


def restore_locked_cells(nb, release) -> list[str]:
    """Put back read-only cells a student deleted, where they stood in the student version.

    nbgrader's ``add_missing_cells`` restores only graded and task cells, yet tests may rely on
    a locked helper cell (lesson 04's fake models, lesson 05's LSTM helpers). Once back, nbgrader
    overwrites its source from the gradebook like any other locked cell.
    """
    present, notes, after = set(grade_ids(nb)), [], None
    for cell in release.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is None:
            continue
        if gid not in present and utils.is_locked(cell) and not utils.is_grade(cell):
            nb.cells.insert(_position_after(nb, after), copy.deepcopy(cell))
            notes.append(HELPER_DELETED.format(grade_id=gid))
        if gid in present or utils.is_locked(cell):
            after = gid
    return notes


def _position_after(nb, grade_id) -> int:
    """The index just after the cell with ``grade_id`` (0 when None or absent)."""
    for index, cell in enumerate(nb.cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return index + 1
    return 0
