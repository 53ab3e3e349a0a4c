"""Layout-shift (CLS) measurement for the browser tests, exact whatever the machine's load.

A fixed wait before reading the sum is a guess about when Chromium reports a shift; under load it
reads too early (a shift missed: a no-shift test passes for nothing, the control test fails). Here
the reading waits for rendered frames instead: two animation frames after a DOM change, the frame
that showed it has been laid out and its shifts computed, and `takeRecords()` hands over any entry
the observer has not delivered yet.

A shift exists only relative to something already painted: content that arrives before the first
paint shifts nothing. `painted()` lets a test hold the decision until the fallback is on screen.
"""

from __future__ import annotations

from playwright.sync_api import Page

# Registered before any page script runs (page.add_init_script); sums layout shifts that no user
# input caused (the CLS definition, without session windows: any shift at all counts).
MEASURE_CLS = """
window.__cls = 0;
window.__shifts = [];
const recordShifts = (entries) => {
  for (const entry of entries) {
    if (entry.hadRecentInput) continue;
    window.__cls += entry.value;
    const sources = (entry.sources || []).map((source) => source.node && source.node.nodeName);
    window.__shifts.push({ value: entry.value, sources });
  }
};
const shiftObserver = new PerformanceObserver((list) => recordShifts(list.getEntries()));
shiftObserver.observe({ type: 'layout-shift', buffered: true });
window.__settledCls = () => new Promise((resolve) => {
  requestAnimationFrame(() => requestAnimationFrame(() => {
    recordShifts(shiftObserver.takeRecords());
    resolve(window.__cls);
  }));
});
"""

TWO_FRAMES = "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"


def measure(page: Page) -> None:
    """Measure layout shifts on every document `page` loads from now on."""
    page.add_init_script(MEASURE_CLS)


def settled_cls(page: Page) -> float:
    """The page's CLS once every frame rendered so far has been measured."""
    return float(page.evaluate("() => window.__settledCls()"))


def shifts(page: Page) -> object:
    """The shifts counted so far, with the node names of their sources (for assertion messages)."""
    return page.evaluate("() => window.__shifts")


def painted(page: Page) -> None:
    """Return once the page's current content has been rendered in a frame."""
    page.evaluate(TWO_FRAMES)
