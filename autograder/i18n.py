"""Editions of the course in other languages, from the same solutions/ (the Chinese one: 中文版).

One source, no drift. ``translations/<lang>/<lesson>.po`` is a gettext catalog (edited with
polib, Poedit or any .po editor) with

- an entry per cell, ``msgctxt`` = the cell's id, ``msgid`` = the English cell source of the
  student notebook, ``msgstr`` = its translation. Every Markdown cell must be translated. A code
  cell may be (flag ``code``): only its comments, docstrings and string literals may change,
  never the code, and never in a locked or graded cell (their nbgrader checksums stay equal);
  an empty ``msgstr`` keeps the English code.
- an entry per message of the lesson's test and helper cells and per plot label (no
  ``msgctxt``; flag ``python-brace-format`` for f-strings, whose placeholders are the source
  expressions). ``release`` gathers them into ``d2lmini/locale/<lang>/LC_MESSAGES/lessons.po``,
  which d2lmini uses at run time to translate hints and messages.

When the English source of an entry changes, ``release --update-catalogs`` keeps the old
translation, marks it ``fuzzy`` (with the previous English as ``#| msgid``) and adds new entries
empty; ``release --check`` fails while anything is missing, empty, fuzzy or stale.

``language_of(nb)`` tells the grader a submission's language; ``gettext(message, lang)`` and
``translate_message(text, lang)`` give it feedback text in that language.
"""

import ast
import difflib
import re
from pathlib import Path

import nbformat

from autograder.config import COURSE, SOLUTIONS, lessons

TRANSLATIONS = "translations"
LANGUAGES = ("en", "zh")
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}
LOCALE = Path("d2lmini") / "locale"
CODE_FLAG, MARKDOWN_FLAG, TEMPLATE_FLAG = "code", "markdown", "python-brace-format"
LABEL_KEYWORDS = {"xlabel", "ylabel", "title", "colorbar_label", "label", "legend"}
HEADER = {"Project-Id-Version": "d2lmini course", "MIME-Version": "1.0",
          "Content-Type": "text/plain; charset=UTF-8", "Content-Transfer-Encoding": "8bit"}
GRADER_ERRORS = "NotRun|KernelDied|KernelUnresponsive"  # execute.py's error names
_PROSE = re.compile(r"[A-Za-z]{2,}[ ,:;'()-]+[A-Za-z]{2,}")


# ---------------------------------------------------------------- the grader's API


def language_of(nb) -> str:
    """``"en"`` or ``"zh"``: the language of a notebook (nbformat node, dict or path), from the
    ``language`` key of its metadata that ``release`` sets in ``course/<lang>/``."""
    if isinstance(nb, str | Path):
        nb = nbformat.read(nb, as_version=4)
    lang = (nb.get("metadata") or {}).get("language", "en")
    return lang if lang in LANGUAGES else "en"


REPOSITORY = Path(__file__).resolve().parents[1]


def gettext(message: str, lang: str, root: Path = REPOSITORY) -> str:
    """One of the autograder's own messages (``translations/<lang>/autograder.po``) in lang."""
    if lang == "en":
        return message
    return _autograder_catalog(lang, root)[0].get(message) or message


def translate_message(text: str, lang: str) -> str:
    """A finished test message (e.g. ``"AssertionError: ..."`` as the grader records it) in
    ``lang``: d2lmini's catalogs and templates, then the autograder's own; unknown text comes
    back unchanged."""
    from d2lmini.i18n import fill, translate

    if lang == "en" or not text:
        return text
    kind, sep, rest = text.partition(": ")
    if sep and re.fullmatch(r"[A-Za-z_][\w.]*(Error|Exception|Timeout)|" + GRADER_ERRORS, kind):
        return f"{kind}: {translate_message(rest, lang)}"
    translated = translate(text, lang)
    if translated != text:
        return translated
    exact = gettext(text, lang)
    if exact != text:
        return exact
    for regex, groups, msgstr in _autograder_catalog(lang, REPOSITORY)[1]:
        match = regex.fullmatch(text)
        if match:
            return fill(msgstr, {name: _placeholder_text(match.group(f"g{i}"), lang)
                                 for name, i in groups.items()})
    return text


def _placeholder_text(text: str, lang: str) -> str:
    """A placeholder's text: a sentence may be another of the grader's messages (a reason
    inside a reason); a single word (a name: ``output``, ``test``) is only d2lmini's to change."""
    from d2lmini.i18n import translate

    return translate_message(text, lang) if " " in text.strip() else translate(text, lang)


_AUTOGRADER_CATALOGS = {}


def _autograder_catalog(lang, root):
    """({msgid: msgstr}, templates) of ``root/translations/<lang>/autograder.po``."""
    key = (lang, str(root))
    if key not in _AUTOGRADER_CATALOGS:
        import polib

        from d2lmini.i18n import TEMPLATE_FLAG as FLAG
        from d2lmini.i18n import template_regex

        path = root / TRANSLATIONS / lang / "autograder.po"
        po = polib.pofile(str(path)) if path.is_file() else []
        done = [e for e in po if e.translated()]
        templates = sorted((e for e in done if FLAG in e.flags),  # the most specific first
                           key=lambda e: -len(re.sub(r"\{[^{}]*\}", "", e.msgid)))
        _AUTOGRADER_CATALOGS[key] = ({e.msgid: e.msgstr for e in done},
                                      [template_regex(e.msgid, e.msgstr) for e in templates])
    return _AUTOGRADER_CATALOGS[key]


# ---------------------------------------------------------------- what is translated


def editions(root: Path) -> list[str]:
    """The languages besides English that have a ``translations/<lang>/`` folder."""
    folder = root / TRANSLATIONS
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name in LANGUAGES
                  and p.name != "en") if folder.is_dir() else []


def catalog_file(root: Path, lang: str, name: str) -> Path:
    return root / TRANSLATIONS / lang / f"{name}.po"


def _nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def is_frozen(cell) -> bool:
    """Locked or graded cells keep their English source (their checksums are the grades')."""
    meta = _nbgrader(cell)
    return bool(meta.get("locked") or meta.get("grade") or "helper" in
                cell.metadata.get("tags", []))


def cell_entries(nb) -> list[tuple[str, str, str]]:
    """(cell id, English source, "markdown" or "code") of every translatable cell."""
    entries = []
    for cell in nb.cells:
        if cell.get("id") == "generated-notice" or not cell.source.strip():
            continue
        if cell.cell_type == "markdown":
            entries.append((cell.id, cell.source, MARKDOWN_FLAG))
        elif cell.cell_type == "code" and not is_frozen(cell):
            entries.append((cell.id, cell.source, CODE_FLAG))
    return entries


def message_strings(nb) -> dict[str, tuple[str, bool]]:
    """{message: (where, is a template)} for the prose strings of the test and helper cells
    (what a failing test says) and the plot labels of every code cell; f-strings become brace
    templates whose placeholders are the source expressions."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        where = _nbgrader(cell).get("grade_id") or cell.get("id")
        try:
            tree = ast.parse(_without_markers(cell.source))
        except SyntaxError:
            continue
        strings = _all_strings(tree) if is_frozen(cell) else _label_strings(tree)
        for text, template in strings:
            found.setdefault(text, (where, template))
    return found


def _without_markers(source):
    return "\n".join(line for line in source.splitlines()
                     if not line.strip().startswith(("### BEGIN", "### END")))


def _docstrings(tree):
    """The docstring nodes (module, functions, classes): they explain, students never see them
    as messages."""
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef))]
    return {id(n.body[0].value) for n in nodes if n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}


def _all_strings(tree):
    """Every prose string of a cell except docstrings (nested f-string parts skipped)."""
    skip = _docstrings(tree)
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    for node in ast.walk(tree):
        if id(node) in skip or id(node) in inner:
            continue
        text = _string_of(node)
        if text and _is_prose(node):
            yield text, isinstance(node, ast.JoinedStr)


def _label_strings(tree):
    """The strings given to plot-label keywords (xlabel=, title=, legend=[...], ...)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg in LABEL_KEYWORDS:
                    value = keyword.value
                    values = (value.elts if isinstance(value, ast.List | ast.Tuple)
                              else [value.elt] if isinstance(value, ast.ListComp | ast.GeneratorExp)
                              else [value])
                    for value in values:
                        text = _string_of(value)
                        if text and re.search(r"[A-Za-z]{2,}", _literal_text(value)):
                            yield text, isinstance(value, ast.JoinedStr)


def _string_of(node):
    """A str constant's text, or an f-string as a brace template (``{expr:spec}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for value in node.values:
        if isinstance(value, ast.Constant):
            parts.append(value.value.replace("{", "{{").replace("}", "}}"))
            continue
        if value.format_spec is not None and any(
                not isinstance(v, ast.Constant) for v in value.format_spec.values):
            return None  # a computed format spec: no fixed template
        text = ast.unparse(value.value)
        if value.conversion != -1:
            text += "!" + chr(value.conversion)
        if value.format_spec is not None:
            text += ":" + "".join(v.value for v in value.format_spec.values)
        if "{" in text or "}" in text:
            return None
        parts.append("{" + text + "}")
    return "".join(parts)


def _is_prose(node):
    """Words a student reads: two words in a row, or an f-string around three letters or more
    (``f"rnn: {cause}"``)."""
    text = _literal_text(node)
    if isinstance(node, ast.JoinedStr):
        return len(re.findall(r"[A-Za-z]", text)) >= 3
    return bool(_PROSE.search(text))


def _literal_text(node):
    if isinstance(node, ast.JoinedStr):
        return " ".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return node.value


# ---------------------------------------------------------------- is a code translation safe


class _Blank(ast.NodeTransformer):
    """Every string literal replaced by one placeholder: what is left is the code. An
    f-string keeps its expressions (in any order: a translation may reorder them)."""

    def visit_Constant(self, node):
        return ast.Constant("") if isinstance(node.value, str) else node

    def visit_JoinedStr(self, node):
        expressions = sorted(ast.dump(self.visit(value.value)) for value in node.values
                             if isinstance(value, ast.FormattedValue))
        return ast.Constant("f-string:" + "|".join(expressions))


def same_code(english: str, translated: str) -> bool:
    """True when ``translated`` differs from ``english`` only in comments and strings."""
    try:
        trees = [ast.parse(_without_markers(s)) for s in (english, translated)]
    except SyntaxError:
        return False
    blank = [ast.dump(_Blank().visit(t)) for t in trees]
    return blank[0] == blank[1]


# ---------------------------------------------------------------- applying the catalogs


def load_catalog(path: Path):
    """The polib catalog at ``path`` (an empty one when the file does not exist)."""
    import polib

    return polib.pofile(str(path), wrapwidth=0) if path.is_file() else polib.POFile(wrapwidth=0)


def usable(entry, source: str) -> bool:
    """A translation that may be used for a cell whose English source is ``source``."""
    return (entry is not None and entry.msgid == source and entry.msgstr.strip() != ""
            and "fuzzy" not in entry.flags
            and (CODE_FLAG not in entry.flags or same_code(source, entry.msgstr)))


def translate_cells(nb, catalog) -> int:
    """Replace, in place, the source of every cell of ``nb`` that has a usable translation;
    return how many. Works on student notebooks and on solution notebooks alike (a solution
    cell's source is not the student stub, so it stays as it is)."""
    from nbgrader.utils import compute_checksum

    by_id = {e.msgctxt: e for e in catalog if e.msgctxt}
    count = 0
    for cell in nb.cells:
        entry = by_id.get(cell.get("id"))
        if cell.cell_type == "code" and is_frozen(cell) or not usable(entry, cell.source):
            continue
        cell.source = entry.msgstr
        count += 1
        if "checksum" in _nbgrader(cell):  # an answer stub: nbgrader's checksum of its text
            cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
    return count


def translated_notebook(nb, lang: str, catalog, notice=None):
    """A copy of ``nb`` in ``lang``: cells translated, metadata ``language`` set."""
    nb = nbformat.from_dict(nb)
    translate_cells(nb, catalog)
    if notice is not None and nb.cells and nb.cells[0].get("id") == notice.id:
        nb.cells[0] = notice
    nb.metadata["language"] = lang
    return nb


def notice_text(lang: str, name: str, root: Path = REPOSITORY) -> str:
    """The generated-file notice of a translated notebook."""
    return gettext("> **Generated file.** This student notebook is generated from "
                   "`{solutions}/{name}.ipynb` and `{translations}/{lang}/{name}.po` by "
                   "`python -m autograder release`; changes made here are overwritten.\n>\n"
                   "> Students: work in this notebook as usual; answer where it says "
                   "`YOUR CODE HERE`.", lang, root).format(
        solutions=SOLUTIONS, name=name, translations=TRANSLATIONS, lang=lang)


# ---------------------------------------------------------------- keeping catalogs current


def update_catalog(old, cells, messages):
    """A new catalog for these cells and messages, keeping what ``old`` translated.

    Args:
        old: the current polib catalog.
        cells: [(cell id, English source, kind)].
        messages: {English message: where it comes from}.
    """
    import polib

    po = polib.POFile(wrapwidth=0)
    po.metadata = {**HEADER, **(old.metadata or {})}
    by_ctx = {e.msgctxt: e for e in old if e.msgctxt and not e.obsolete}
    by_msgid = {e.msgid: e for e in old if e.msgstr and not e.obsolete}
    for ctx, source, kind in cells:
        entry = polib.POEntry(msgctxt=ctx, msgid=source, flags=[kind])
        _carry_over(entry, by_ctx.get(ctx), by_msgid.get(source))
        po.append(entry)
    old_messages = [e for e in old if not e.msgctxt and e.msgstr and not e.obsolete]
    for text, (where, template) in messages.items():
        entry = polib.POEntry(msgid=text, comment=f"from {where}",
                              flags=[TEMPLATE_FLAG] if template else [])
        close = difflib.get_close_matches(text, [e.msgid for e in old_messages], 1, 0.75)
        similar = next((e for e in old_messages if close and e.msgid == close[0]), None)
        _carry_over(entry, similar, by_msgid.get(text))
        po.append(entry)
    return po


def _carry_over(entry, same_place, same_text):
    """Keep a translation: as it was when the English is unchanged, fuzzy when it changed."""
    if same_text is not None and same_text.msgstr:
        entry.msgstr = same_text.msgstr
        if "fuzzy" in same_text.flags:
            entry.flags.append("fuzzy")
            entry.previous_msgid = same_text.previous_msgid
    elif same_place is not None and same_place.msgstr:
        entry.msgstr = same_place.msgstr
        entry.flags.append("fuzzy")
        entry.previous_msgid = same_place.previous_msgid or same_place.msgid


def problems_of_catalog(catalog, cells, messages, label: str) -> list[str]:
    """One line per missing, empty, fuzzy, stale or unsafe translation."""
    from d2lmini.i18n import placeholders

    by_ctx = {e.msgctxt: e for e in catalog if e.msgctxt and not e.obsolete}
    by_msgid = {e.msgid: e for e in catalog if not e.msgctxt and not e.obsolete}
    problems = []
    for ctx, source, kind in cells:
        entry = by_ctx.get(ctx)
        if entry is None:
            if kind == MARKDOWN_FLAG:
                problems.append(f"missing: {label} cell {ctx}")
        elif entry.msgid != source:
            problems.append(f"stale (the English cell changed): {label} cell {ctx}")
        elif "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {label} cell {ctx}")
        elif not entry.msgstr.strip():
            if kind == MARKDOWN_FLAG:
                problems.append(f"untranslated: {label} cell {ctx}")
        elif kind == CODE_FLAG and not same_code(source, entry.msgstr):
            problems.append(f"changes the code (only comments and strings may change): "
                            f"{label} cell {ctx}")
    for text, (_, template) in messages.items():
        entry = by_msgid.get(text)
        if entry is None:
            problems.append(f"missing: {label} message {_short(text)}")
        elif "fuzzy" in entry.flags:
            problems.append(f"fuzzy: {label} message {_short(text)}")
        elif not entry.msgstr.strip():
            problems.append(f"untranslated: {label} message {_short(text)}")
        elif template and sorted(placeholders(text)) != sorted(placeholders(entry.msgstr)):
            problems.append(f"placeholders differ: {label} message {_short(text)}")
    return problems


def _short(text):
    text = text.replace("\n", " ")
    return repr(text if len(text) < 70 else text[:67] + "...")


def runtime_catalog(catalogs, lang: str):
    """d2lmini's ``lessons`` catalog: the translated messages of every lesson, deduplicated."""
    import polib

    po = polib.POFile(wrapwidth=0)
    po.metadata = {**HEADER, "Language": lang}
    seen = set()
    for name, catalog in catalogs:
        for e in catalog:
            if e.msgctxt or e.obsolete or not e.msgstr or "fuzzy" in e.flags or e.msgid in seen:
                continue
            seen.add(e.msgid)
            po.append(polib.POEntry(msgid=e.msgid, msgstr=e.msgstr, comment=f"{name}: "
                                    f"{e.comment}".strip(), flags=list(e.flags)))
    return po


def solution_messages(root: Path, name: str) -> dict[str, tuple[str, bool]]:
    """message_strings of ``solutions/<name>.ipynb`` (hidden tests included)."""
    return message_strings(nbformat.read(root / SOLUTIONS / f"{name}.ipynb", as_version=4))


def edition_path(root: Path, lang: str, name: str) -> Path:
    """Where the ``lang`` edition of a lesson goes: ``course/<lang>/<name>.ipynb``."""
    return root / COURSE / lang / f"{name}.ipynb"


def all_lessons(root: Path) -> list[str]:
    return lessons(root / SOLUTIONS)


# ---------------------------------------------------------------- d2lmini's own catalog

LIBRARY_CALLS = {"_", "gettext", "_expected"}  # functions whose first argument is a msgid


def library_messages(package: Path) -> dict[str, tuple[str, bool]]:
    """{msgid: (where, is a template)} of every ``_("...")`` (and ``gettext``, ``_expected``)
    call in the package's modules."""
    found = {}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(
                node.func, "attr", None)
            first = node.args[0]
            if func in LIBRARY_CALLS and isinstance(first, ast.Constant) and isinstance(
                    first.value, str):
                from d2lmini.i18n import placeholders

                found.setdefault(first.value, (path.name,
                                               bool(placeholders(first.value))))
    return found


def library_catalog_path(root: Path, lang: str) -> Path:
    return root / LOCALE / lang / "LC_MESSAGES" / "d2lmini.po"


def update_library_catalog(root: Path, lang: str):
    """d2lmini.po with an entry for every msgid of the package; entries added by hand for
    strings d2lmini translates with ``translate`` (plot labels of other modules) are kept."""
    old = load_catalog(library_catalog_path(root, lang))
    po = update_catalog(old, [], library_messages(root / "d2lmini"))
    known = {e.msgid for e in po}
    for entry in old:
        if not entry.msgctxt and not entry.obsolete and entry.msgid not in known:
            po.append(entry)
    po.metadata.setdefault("Language", lang)
    return po
