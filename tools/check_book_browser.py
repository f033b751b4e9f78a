#!/usr/bin/env python3
"""Check the built book in a real browser: headless Chromium opens every chapter.

`tools/check_book.py` checks the book's sources and that mdBook builds it; it
cannot see what a reader sees. This script builds the book, then opens each
chapter listed in SUMMARY.md in headless Chromium (file://, no server) and
checks, after the page has loaded:

- the page renders: it has a <title> and a heading in <main>;
- math is typeset: a chapter whose source has `$...$` or `$$...$$` has KaTeX
  spans, none of them is a `.katex-error`, no raw `$$` (nor inline TeX with
  a backslash command) is left in the text outside code, the KaTeX style
  sheet applies (a `.katex` element uses a KaTeX font) and no KaTeX font
  failed to load;
- every <img> loads: `complete` and `naturalWidth > 0`;
- no code listing is wider than the page (its text would run past the
  listing's right edge, behind a scroll bar): every `<pre>` in <main> has
  `scrollWidth <= clientWidth`, at a window 1280 pixels wide.

How: each chapter's HTML is copied beside itself with a small script added
that waits for the `load` event, collects these facts as JSON into a
`<pre id="browser-check">`, and Chromium's `--dump-dom` prints the page
after `--virtual-time-budget` (the copy is deleted afterwards).

Usage: python3 tools/check_book_browser.py [--book book] [--chromium /usr/bin/chromium]
                                           [--no-build] [--chapter training]...
Exit status: 0 when every chapter passes, 1 with a list of problems
otherwise, 2 when Chromium or mdBook cannot be run. Standard library only.
Too heavy for CI (a browser per chapter); run it before publishing the book.
"""

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

MARKER = "browser-check"

# Runs in the page: report what a reader would see, once everything has loaded.
PROBE = """
<script>
window.addEventListener('load', function () {
  var r = {title: document.title, h1: '', katex: 0, katexErrors: 0,
           rawDisplay: false, rawInline: [], katexFont: '', fontsLoaded: 0,
           fontsFailed: [], images: [], wideListings: []};
  var main = document.querySelector('main');
  if (main) {
    var h = main.querySelector('h1, h2');
    r.h1 = h ? h.textContent.trim() : '';
    r.katex = main.querySelectorAll('.katex').length;
    r.katexErrors = main.querySelectorAll('.katex-error').length;
    var text = main.cloneNode(true);
    text.querySelectorAll('pre, code, .katex, .katex-display, script, style')
        .forEach(function (e) { e.remove(); });
    var t = text.textContent;
    r.rawDisplay = t.indexOf('$$') >= 0;
    r.rawInline = (t.match(/\\$[^$\\n]{0,80}?\\\\[a-zA-Z]+[^$\\n]{0,80}?\\$/g) || []).slice(0, 3);
    var k = main.querySelector('.katex');
    if (k) { r.katexFont = getComputedStyle(k).fontFamily; }
    main.querySelectorAll('pre, pre > code').forEach(function (p) {
      if (p.scrollWidth > p.clientWidth + 1) {
        var longest = p.textContent.split('\\n').reduce(function (a, b) {
          return b.length > a.length ? b : a; }, '');
        r.wideListings.push(longest.trim().slice(0, 60));
      }
    });
  }
  document.fonts.forEach(function (f) {
    if (f.family.replace(/["']/g, '').indexOf('KaTeX') === 0) {
      if (f.status === 'loaded') { r.fontsLoaded += 1; }
      if (f.status === 'error') { r.fontsFailed.push(f.family + ' ' + f.style + ' ' + f.weight); }
    }
  });
  r.images = Array.prototype.map.call(document.images, function (i) {
    return {src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0};
  });
  var pre = document.createElement('pre');
  pre.id = '%s';
  pre.textContent = JSON.stringify(r);
  document.body.appendChild(pre);
});
</script>
""" % MARKER

SUMMARY_LINK = re.compile(r"\]\(\s*([^)\s]+\.md)\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
MATH = re.compile(r"\$\$|\$[^\s$][^$\n]*\$")
RESULT = re.compile(r'<pre id="%s">(.*?)</pre>' % MARKER, re.S)


def chapters(book):
    """The chapters of SUMMARY.md in order, as paths relative to src/."""
    with open(os.path.join(book, "src", "SUMMARY.md"), encoding="utf-8") as f:
        return [m.group(1) for m in SUMMARY_LINK.finditer(f.read())]


def has_math(source):
    """Whether a chapter's markdown holds math outside code."""
    text = INLINE_CODE.sub("", FENCE.sub("", source))
    return MATH.search(text) is not None


def probe(chromium, page, budget_ms, timeout, profile):
    """Open `page` (a file path) in headless Chromium; return the probe's dict
    or a string saying why there is none."""
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",  # root in containers; the pages are our own
        "--disable-gpu",
        "--no-first-run",
        "--allow-file-access-from-files",
        "--user-data-dir=" + profile,
        "--window-size=1280,900",
        "--virtual-time-budget=%d" % budget_ms,
        "--dump-dom",
        "file://" + os.path.abspath(page),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "chromium did not finish within %d s" % timeout
    m = RESULT.search(out.stdout)
    if not m:
        tail = out.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return "the page never finished loading (exit %d; %s)" % (out.returncode, tail[0])
    return json.loads(html.unescape(m.group(1)))


def check_chapter(facts, expects_math):
    """The problems a probe's facts show."""
    problems = []
    if not facts["title"].strip():
        problems.append("no <title>")
    if not facts["h1"]:
        problems.append("no heading in <main>: the chapter did not render")
    if expects_math:
        if facts["katex"] == 0:
            problems.append("the source has math but the page has no KaTeX spans")
        elif "katex" not in facts["katexFont"].lower():
            problems.append(
                "KaTeX spans are not styled by the KaTeX CSS (font-family %r)" % facts["katexFont"]
            )
        elif facts["fontsLoaded"] == 0:
            problems.append("no KaTeX font loaded")
    if facts["katexErrors"]:
        problems.append("%d formulas KaTeX could not render" % facts["katexErrors"])
    if facts["rawDisplay"]:
        problems.append("raw $$ left in the text (display math not typeset)")
    for raw in facts["rawInline"]:
        problems.append("raw inline TeX left in the text: %s" % raw)
    for font in facts["fontsFailed"]:
        problems.append("KaTeX font failed to load: %s" % font)
    for line in facts["wideListings"]:
        problems.append("a code listing is wider than the page (longest line: %s...)" % line)
    # the theme shows each figure twice (inline and zoomed): report a file once
    for src in dict.fromkeys(i["src"] for i in facts["images"] if not i["ok"]):
        problems.append("image does not load: %s" % src)
    return problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--book", default=os.path.join(here, "..", "book"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--no-build", action="store_true", help="check book/book as it is")
    parser.add_argument(
        "--chapter", action="append", help="only this chapter (name without .md; repeatable)"
    )
    parser.add_argument("--budget-ms", type=int, default=10000, help="virtual time per page")
    parser.add_argument("--timeout", type=int, default=90, help="seconds per page")
    args = parser.parse_args()
    book = os.path.abspath(args.book)

    if not os.path.exists(args.chromium):
        print("error: no Chromium at %s (apt-get install chromium)" % args.chromium)
        return 2
    if not args.no_build:
        try:
            built = subprocess.run(["mdbook", "build", book], capture_output=True, text=True)
        except FileNotFoundError:
            print("error: mdbook is not installed")
            return 2
        if built.returncode != 0:
            print("error: mdbook build failed:\n" + built.stderr)
            return 1
    out_dir = os.path.join(book, "book")

    names = chapters(book)
    if args.chapter:
        wanted = {c[:-3] if c.endswith(".md") else c for c in args.chapter}
        names = [n for n in names if n[:-3] in wanted]
        if not names:
            print("error: no chapter of SUMMARY.md is named %s" % ", ".join(sorted(wanted)))
            return 2
    problems = []
    profile = tempfile.mkdtemp(prefix="book-browser-check-")
    try:
        for name in names:
            page = os.path.join(out_dir, name[:-3] + ".html")
            if not os.path.isfile(page):
                problems.append("%s: not built (%s missing)" % (name, page))
                continue
            with open(page, encoding="utf-8") as f:
                text = f.read()
            if "</body>" not in text:
                problems.append("%s: the built page has no </body>" % name)
                continue
            # beside the original, so every relative link resolves the same way
            copy = os.path.join(os.path.dirname(page), ".browser-check-" + os.path.basename(page))
            with open(copy, "w", encoding="utf-8") as f:
                f.write(text.replace("</body>", PROBE + "</body>", 1))
            try:
                facts = probe(args.chromium, copy, args.budget_ms, args.timeout, profile)
            finally:
                os.remove(copy)
            with open(os.path.join(book, "src", name), encoding="utf-8") as f:
                expects_math = has_math(f.read())
            if isinstance(facts, str):
                problems.append("%s: %s" % (name, facts))
                continue
            found = check_chapter(facts, expects_math)
            problems.extend("%s: %s" % (name, p) for p in found)
            print(
                "%-28s %s  (%d KaTeX spans, %d images)"
                % (name, "ok" if not found else "PROBLEMS", facts["katex"], len(facts["images"]))
            )
    finally:
        shutil.rmtree(profile, ignore_errors=True)

    if problems:
        print("\n%d problems:" % len(problems))
        for p in problems:
            print("  " + p)
        return 1
    print("\nall %d chapters render, typeset their math and load their images" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
