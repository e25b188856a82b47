"""The README's viewer figure (``docs/viewer.png``): a self-play run's page at its last
round, the first solved problem selected, its chosen answer clicked, 1280 x 720 pixels, in
headless Chromium (``playwright``; Debian's ``chromium``, as the viewer's tests use).

    python docs/viewer_png.py runs/default/s0 --out docs/viewer.png

The page is written to a temporary file (the run directory is left as it is).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesearch.view.report import write_view  # noqa: E402

CHROMIUM = os.environ.get("TREESEARCH_CHROMIUM", "/usr/bin/chromium")


def screenshot(run: Path, out: Path, size=(1280, 720)) -> None:
    """Write the page of ``run`` (its last round), one solved problem's chosen answer
    clicked, to the PNG ``out``."""
    from playwright.sync_api import sync_playwright  # lazy: the test extra's browser driver

    with tempfile.TemporaryDirectory() as tmp:
        page_path = write_view(run, Path(tmp) / "view.html")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            tab = browser.new_page(viewport={"width": size[0], "height": size[1]})
            tab.goto(page_path.resolve().as_uri())
            tab.wait_for_selector("body[data-ready]")
            rounds = tab.eval_on_selector_all("#round option", "os => os.map(o => o.value)")
            tab.select_option("#round", rounds[-1])
            tab.select_option("#filter", "solved")
            tab.locator("#problem-list tr[data-index]").first.click()
            chosen = tab.get_attribute("#chosen-path", "data-end")
            tab.locator(f'#nodes circle[data-node="{chosen}"]').dispatch_event("click")
            tab.wait_for_selector(f'#details[data-node="{chosen}"]')
            tab.screenshot(path=str(out))
            browser.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a self-play run directory")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "viewer.png")
    args = parser.parse_args(argv)
    screenshot(args.run, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
