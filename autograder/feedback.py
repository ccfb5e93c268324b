"""GRADER SIDE: the feedback page of one submission, written by the grader.

Each graded cell shows the grader's verdict (pass/fail, points, the grader's own message)
under the test's visible source (hidden tests removed). The student's own cells and outputs
are kept but sanitised: Markdown and HTML go through nh3 with a small allow-list (no script,
no event handler, no ``style``, no ``javascript:`` URL, no forms or frames), images only as
``data:`` PNG/JPEG/SVG inside ``<img>``, text escaped, and a Content-Security-Policy forbids
scripts outright. Byte budgets per cell and per page keep a huge output from making a huge page.

The page is in the submission's language (``lang``): its own words, and the grader's reason and
notes, which the grader writes in English (results.json, grades.csv and report.html keep them
so), through the templates of ``translations/<lang>/autograder.po``.
"""

import base64
import html
import re

import mistune
import nh3

from autograder.execute import ANSI, redact

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CELL_BUDGET = 200_000      # characters of outputs shown per cell
PAGE_BUDGET = 3_000_000    # characters of outputs shown per page
IMAGE_LIMIT = 1_500_000    # characters of one base64 image
TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em",
        "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s",
        "span", "strong", "sub", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"},
              "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
HIDDEN = re.compile(r"^[ \t]*#+[ \t]*BEGIN HIDDEN TESTS.*?(^[ \t]*#+[ \t]*END HIDDEN TESTS[^\n]*"
                    r"\n?|\Z)", re.S | re.M)
_markdown = mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])
CUT = "... output cut here ({count} characters in all) ..."
IMAGE_LEFT_OUT = "(an image of {count} characters was left out)"
# the lines TruncateOutput (execute.py) writes into an output it cut
TRUNCATED = re.compile(r"^\.\.\. output truncated \((?:[\d,]+ characters|[\d,]+ more outputs|"
                       r"the outputs of this cell passed the byte budget)\) \.\.\.$", re.M)


def clean_html(text: str) -> str:
    """HTML reduced to harmless tags: no scripts, handlers, styles or script URLs."""
    return nh3.clean(text, tags=TAGS, attributes=ATTRIBUTES, url_schemes={"http", "https",
                     "mailto", "data"}, link_rel="noopener noreferrer", strip_comments=True)


def visible_source(source: str) -> str:
    """A test cell's source without its hidden tests (an unterminated block: to the end)."""
    return HIDDEN.sub("", source)


class Budget:
    """How many characters of output the page may still show."""

    def __init__(self, lang: str = "en"):
        self.page, self.lang = PAGE_BUDGET, lang

    def take(self, text: str, cell_left: list[int]) -> str:
        room = min(self.page, cell_left[0])
        shown = text[:max(0, room)]
        self.page -= len(shown)
        cell_left[0] -= len(shown)
        if len(shown) < len(text):
            shown += "\n" + _say(CUT, self.lang, count=f"{len(text):,}")
        return shown


def render_output(output, hidden, budget: Budget, cell_left: list[int]) -> str:
    """One output of a student's cell as safe HTML."""
    kind = output.get("output_type")
    if kind == "stream":
        text = _truncated(redact(str(output.get("text", "")), hidden), budget.lang)
        return _pre(budget.take(text, cell_left),
                    "stderr" if output.get("name") == "stderr" else "out")
    if kind == "error":
        lines = [ANSI.sub("", str(x)) for x in output.get("traceback", [])[-30:]]
        text = redact("\n".join(lines) or f"{output.get('ename')}: {output.get('evalue')}",
                      hidden)
        return _pre(budget.take(_truncated(text, budget.lang), cell_left), "error")
    data = output.get("data", {})
    for mime in IMAGE_TYPES:
        value = data.get(mime)
        if isinstance(value, str) and value.strip():
            return _image(mime, value, budget, cell_left)
    if isinstance(data.get("text/html"), str):
        return clean_html(budget.take(_truncated(redact(data["text/html"], hidden),
                                                budget.lang), cell_left))
    if isinstance(data.get("text/plain"), str):
        text = _truncated(redact(data["text/plain"], hidden), budget.lang)
        return _pre(budget.take(text, cell_left), "out")
    return ""


def _truncated(text: str, lang: str) -> str:
    """TruncateOutput's lines in an output, in ``lang``."""
    if lang == "en":
        return text
    from autograder.i18n import translate_message

    return TRUNCATED.sub(lambda m: translate_message(m.group(0), lang), text)


def _image(mime: str, value: str, budget: Budget, cell_left: list[int]) -> str:
    if mime == "image/svg+xml":
        value = base64.b64encode(value.encode()).decode()
    value = "".join(value.split())
    if len(value) > IMAGE_LIMIT or len(value) > min(budget.page, cell_left[0]) \
            or not re.fullmatch(r"[A-Za-z0-9+/=]*", value):
        return _pre(_say(IMAGE_LEFT_OUT, budget.lang, count=f"{len(value):,}"), "out")
    budget.take("x" * len(value), cell_left)
    return f'<img alt="{_t("output", budget.lang)}" src="data:{mime};base64,{value}">'


def _pre(text: str, css: str) -> str:
    return f'<pre class="{css}">{html.escape(text)}</pre>'


def verdict_box(row: dict, lang: str = "en") -> str:
    """The grader's verdict on one graded cell."""
    ok = row["passed"]
    head = (f'{_t("passed" if ok else "failed", lang)}: {row["points"]:g} / '
            f'{row["max_points"]:g} {_t("points", lang)} ({html.escape(row["grade_id"])})')
    message = "" if ok else f"<pre>{html.escape(row['message'])}</pre>"
    return f'<div class="verdict {"pass" if ok else "fail"}"><b>{head}</b>{message}</div>'


def _t(word: str, lang: str) -> str:
    """One of the page's own words in the submission's language."""
    from autograder.i18n import gettext

    return html.escape(gettext(word, lang))


def _say(template: str, lang: str, **values: str) -> str:
    """One of the page's own templates in ``lang``, filled (not escaped)."""
    from autograder.i18n import gettext
    from d2lmini.i18n import fill

    return fill(gettext(template, lang), values)


def render(nb, *, title: str, rows: list[dict], test_sources: dict[str, str], status: str,
           reason: str, notes: list[str], hidden, lang: str = "en") -> str:
    """The whole feedback page. ``test_sources``: grade_id -> the test cell's source (from
    the instructor's notebook); ``rows``: the grader's per-cell results (messages already in
    ``lang``); ``reason``, ``notes``: the grader's own, in English, shown in ``lang``."""
    from autograder.i18n import translate_message

    reason, notes = translate_message(reason, lang), [translate_message(n, lang) for n in notes]
    by_id = {r["grade_id"]: r for r in rows}
    budget, parts = Budget(lang), []
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in test_sources:
            parts.append(_code(visible_source(test_sources[gid])))
            if gid in by_id:
                parts.append(verdict_box(by_id[gid], lang))
            continue
        if cell.cell_type == "markdown":
            parts.append(f'<div class="md">{clean_html(_markdown(redact(cell.source, hidden)))}'
                         "</div>")
            continue
        if cell.cell_type != "code":
            continue
        parts.append(_code(redact(cell.source, hidden)))
        cell_left = [CELL_BUDGET]
        parts += [render_output(o, hidden, budget, cell_left) for o in cell.get("outputs", [])]
    score = sum(r["points"] for r in rows)
    total = sum(r["max_points"] for r in rows)
    summary = (f"<p>{_t('Score', lang)}: <b>{score:g} / {total:g}</b> ({_t('status', lang)}: "
               f"{_t(status, lang)}{': ' + html.escape(reason) if reason else ''})</p>")
    summary += (f"<table><tr><th>{_t('test', lang)}</th><th>{_t('points', lang)}</th>"
                f"<th>{_t('result', lang)}</th></tr>" + "".join(
                    f"<tr><td>{html.escape(r['grade_id'])}</td><td>{r['points']:g} / "
                    f"{r['max_points']:g}</td><td>"
                    f"{_t('passed', lang) if r['passed'] else html.escape(r['message'][:160])}"
                    "</td></tr>" for r in rows) + "</table>")
    if notes:
        summary += "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
    return page(title, summary + "\n".join(parts), lang)


def _code(source: str) -> str:
    return f'<pre class="code">{html.escape(source)}</pre>'


def page(title: str, body: str, lang: str = "en") -> str:
    """A self-contained page under the feedback Content-Security-Policy."""
    return f"""<!DOCTYPE html>
<html lang="{html.escape(lang)}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
pre {{ white-space: pre-wrap; padding: .5em; }}
pre.code {{ background: #f4f4f4; border-left: 3px solid #999; }}
pre.error, pre.stderr {{ background: #fdecea; }}
div.verdict {{ padding: .5em; margin: .3em 0 1em; border-radius: 4px; }}
div.pass {{ background: #e6f4ea; }} div.fail {{ background: #fce8e6; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .2em .5em; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
