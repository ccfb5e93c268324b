"""The outputs of a grading run: grades.csv, results.json, feedback/, report.html."""

import csv
import html
import json
import re
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

CSV_FIELDS = ["student_id", "assignment", "score", "max_score", "status", "reason"]


def write_all(out: Path, results: list[dict], context: dict) -> None:
    """Every output of the run under ``out``."""
    results = sorted(results, key=lambda r: (r["student"], r["lesson"]))
    write_csv(out / "grades.csv", results)
    write_json(out / "results.json", results, context)
    write_feedback(out / "feedback", results)
    (out / "report.html").write_text(render_report(results, context), encoding="utf-8")


def _num(x: float) -> str:
    return f"{x:g}"


def write_csv(path: Path, results: list[dict]) -> None:
    """One row per submitted (student, assignment)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for r in results:
            writer.writerow([r["student"], r["lesson"], _num(r["score"]), _num(r["max_score"]),
                             r["status"], r["reason"]])


def write_json(path: Path, results: list[dict], context: dict) -> None:
    """Per student, per assignment, per graded cell."""
    students = defaultdict(dict)
    for r in results:
        students[r["student"]][r["lesson"]] = {
            key: r.get(key) for key in ("status", "reason", "notes", "score", "max_score",
                                        "cells", "seconds", "resources", "boundary")}
    payload = {"students": students, "unmatched": context["unmatched"],
               "sandbox": context["sandbox"], "limits": context["limits"],
               "missing": context.get("missing", []),  # roster students without a submission
               "class_list": context.get("class_list", {})}  # student id: lms_id, name, email
    path.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")


def write_feedback(folder: Path, results: list[dict]) -> None:
    """OUT/feedback/<student>/<assignment>.html: nbgrader's feedback, or why there is none (in
    the submission's language when the result names one: ``lang``)."""
    from autograder.i18n import gettext, translate_message

    for r in results:
        target = folder / r["student"] / f"{r['lesson']}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        if r.get("feedback") and Path(r["feedback"]).is_file():
            shutil.copyfile(r["feedback"], target)
        else:
            lang = r.get("lang", "en")
            notebook = f"<code>{html.escape(r['lesson'])}.ipynb</code>"
            reason = html.escape(translate_message(r["reason"], lang))
            target.write_text(_page(gettext("{lesson}: not graded", lang).format(
                lesson=r["lesson"]), "<p>" + gettext(
                    "Your notebook {notebook} could not be graded: {reason}.", lang).format(
                    notebook=notebook, reason=reason) + f"</p><p>{gettext('Score', lang)}: 0 / "
                f"{_num(r['max_score'])}</p>", lang), encoding="utf-8")


def _page(title: str, body: str, lang: str = "en") -> str:
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
             "text-align:left;vertical-align:top}.bad{color:#a00}")
    start = "<html>" if lang == "en" else f"<html lang='{html.escape(lang)}'>"
    return (f"<!DOCTYPE html>{start}<head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>\n")


def bar_chart(rows: list[tuple[str, float, str]], width: int = 320) -> str:
    """A horizontal SVG bar chart: (label, fraction 0..1, annotation) per bar."""
    height, label_w = 18, 260
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + width + 90}' "
             f"height='{height * len(rows) + 4}' role='img'>"]
    for i, (label, frac, note) in enumerate(rows):
        y = i * height + 2
        parts.append(f"<text x='0' y='{y + 13}' font-size='12'>{html.escape(label)}</text>"
                     f"<rect x='{label_w}' y='{y}' width='{width}' height='14' fill='#eee'/>"
                     f"<rect x='{label_w}' y='{y}' width='{frac * width:.1f}' height='14' "
                     f"fill='#4a7'/><text x='{label_w + width + 6}' y='{y + 13}' "
                     f"font-size='12'>{html.escape(note)}</text>")
    return "".join(parts) + "</svg>"


def pass_rates(results: list[dict]) -> str:
    """Per lesson, per graded cell: the share of submissions that passed it."""
    by_lesson = defaultdict(list)
    for r in results:
        by_lesson[r["lesson"]].append(r)
    sections = []
    for lesson in sorted(by_lesson):
        counts = defaultdict(lambda: [0, 0])
        for r in by_lesson[lesson]:
            for cell in r["cells"]:
                counts[cell["grade_id"]][0] += cell["passed"]
                counts[cell["grade_id"]][1] += 1
        rows = [(gid, p / n, f"{p}/{n} ({100 * p / n:.0f}%)") for gid, (p, n) in counts.items()]
        sections.append(f"<h3>{html.escape(lesson)}</h3>{bar_chart(rows)}")
    return "<h2>Pass rate per exercise</h2>" + "".join(sections)


def distribution(results: list[dict]) -> str:
    """Per lesson: how many submissions scored in each tenth of the maximum."""
    by_lesson = defaultdict(list)
    for r in results:
        if r["max_score"]:
            by_lesson[r["lesson"]].append(r["score"] / r["max_score"])
    sections = []
    for lesson in sorted(by_lesson):
        fracs = by_lesson[lesson]
        bins = [0] * 11
        for f in fracs:
            bins[min(10, int(f * 10 + 1e-9))] += 1
        rows = [(f"{10 * i}%" + ("" if i == 10 else f"-{10 * i + 9}%"), n / len(fracs), str(n))
                for i, n in enumerate(bins)]
        summary = (f"{len(fracs)} submissions, median {100 * statistics.median(fracs):.0f}%, "
                   f"mean {100 * statistics.fmean(fracs):.0f}%")
        sections.append(f"<h3>{html.escape(lesson)}</h3><p>{summary}</p>{bar_chart(rows)}")
    return "<h2>Score distribution</h2>" + "".join(sections)


def problems(results: list[dict], unmatched: list[dict]) -> str:
    """Every submission that did not grade cleanly, and every file that was not graded."""
    rows = [r for r in results if r["status"] != "graded" or r["notes"]]
    body = "".join(
        f"<tr><td>{html.escape(r['student'])}</td><td>{html.escape(r['lesson'])}</td>"
        f"<td class='bad'>{html.escape(r['status'])}</td><td>{html.escape(r['reason'])}"
        f"{''.join('<br>' + html.escape(n) for n in r['notes'])}</td></tr>" for r in rows)
    files = "".join(f"<tr><td>{html.escape(u['file'])}</td><td>{html.escape(u['reason'])}"
                    "</td></tr>" for u in unmatched)
    return (f"<h2>Submissions that did not grade cleanly ({len(rows)})</h2><table><tr>"
            f"<th>student</th><th>assignment</th><th>status</th><th>reason and notes</th></tr>"
            f"{body}</table><h2>Files not graded ({len(unmatched)})</h2><table><tr><th>file"
            f"</th><th>why</th></tr>{files}</table>")


def missing_table(missing: list[dict]) -> str:
    """Roster students who submitted nothing for a lesson graded in the run."""
    rows = "".join(f"<tr><td>{html.escape(m['student'])}</td><td>{html.escape(m['name'])}</td>"
                   f"<td>{html.escape(m['lesson'])}</td><td>{html.escape(m['reason'])}</td></tr>"
                   for m in missing)
    return (f"<h2>Students with nothing graded ({len(missing)})</h2><table><tr><th>student"
            f"</th><th>name</th><th>assignment</th><th>why</th></tr>{rows}</table>")


def render_report(results: list[dict], context: dict) -> str:
    """The instructor's report page."""
    statuses = defaultdict(int)
    for r in results:
        statuses[r["status"]] += 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    limits = context["limits"]
    head = (f"<p><b>Isolation:</b> {html.escape(context['sandbox'])}.</p>"
            f"<p>{len(results)} submissions ({counts or 'none'}); {context['reused']} reused "
            f"from an earlier run; {context['jobs']} in parallel; {context['seconds']} s.</p>"
            f"<p>Limits per kernel: memory {limits['memory'] / 1024 ** 3:g} GiB, CPU "
            f"{limits['cpu']} s, {limits['processes']} processes, files "
            f"{limits['file_size'] / 1024 ** 2:g} MiB, {limits['cell_timeout']} s per cell.</p>"
            f"<p>Gradebook: <code>{html.escape(_mask(context['gradebook']))}</code></p>")
    return _page("Grading report", head + problems(results, context["unmatched"])
                 + missing_table(context.get("missing", []))
                 + pass_rates(results) + distribution(results))


def _mask(url: str) -> str:
    """A database URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)
