"""The three pages each session walks, and the scripts the load generator installs in every page."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    name: str
    path: str
    title: str
    main: str           # CSS selector of the page's main element
    rerun: str          # what the rerun interaction does, for the report


PAGES = (
    PageSpec("fleet", "/", "Fleet overview", "[data-testid='stDataFrame']", "type 'credit' in the name filter"),
    PageSpec("drift", "/drift?model=credit-risk", "Drift explorer", "[data-testid='stPlotlyChart']",
             "pick the next feature"),
    PageSpec("model", "/model?model=fraud-detection", "Model detail", "[data-testid='stDataFrame']",
             "switch the model to credit-risk"),
)

# Installed in every document before its scripts run: records, in performance.now() milliseconds
# since navigation start, when the page's title and main element are first visible (render), when
# the page last became complete (settled: script not running, nothing stale, no skeleton or spinner;
# reset whenever it stops being so), how many script runs have started, when the first and the
# latest run started and when the latest ended (as the browser sees the server's run state).
PROBE_JS = """
(() => {
  const TARGETS = %s;
  const B = window.__bench = {runs: 0, render: null, settled: null, state: null,
                              firstRun: null, runStart: null, runEnd: null};
  const idle = (v) => v === null || v === 'notRunning' || v === 'initial';
  const BUSY = "[data-stale='true'],[data-testid='stSkeleton'],[data-testid='stSkeletonElement'],"
             + "[data-testid='stAppSkeleton'],[data-testid='stSpinner']";
  const visible = (e) => e && e.checkVisibility();
  function tick() {
    const now = performance.now();
    const app = document.querySelector("[data-testid='stApp']");
    const state = app && app.getAttribute('data-test-script-state');
    if (state && !idle(state) && B.runStart === null) B.firstRun = B.runStart = now;
    const target = TARGETS[location.pathname];
    if (B.render === null && target) {
      const title = [...document.querySelectorAll('h1')].find((h) => h.textContent.includes(target[0]));
      if (visible(title) && visible(document.querySelector(target[1]))) B.render = now;
    }
    if (state === 'notRunning' && !document.querySelector(BUSY)) {
      if (B.settled === null) B.settled = now;
    } else {
      B.settled = null;
    }
  }
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes' && r.attributeName === 'data-test-script-state') {
        const v = r.target.getAttribute('data-test-script-state'), now = performance.now();
        if (!idle(v) && idle(B.state)) {
          B.runs++;
          B.runStart = now;
          if (B.firstRun === null) B.firstRun = now;
        } else if (v === 'notRunning' && !idle(B.state)) {
          B.runEnd = now;
        }
        B.state = v;
      }
    }
    tick();
  }).observe(document, {subtree: true, childList: true, attributes: true});
  setInterval(tick, 50);
})();
"""

# The load generator's pages skip CSS animations and transitions (skeleton shimmer, spinners, fades):
# they cost only the browser's CPU, which on this machine is the server's CPU too (measured: about
# 15 % less Chromium CPU for the same walk). Nothing the server sends or the page shows changes.
NO_ANIMATIONS_JS = """
document.addEventListener('DOMContentLoaded', () => {
  const style = document.createElement('style');
  style.textContent = '*, *::before, *::after { animation: none !important; transition: none !important; }';
  document.head.appendChild(style);
});
"""


# What keeps a page from counting as complete, for the failure reason of a step that timed out.
DIAGNOSE_JS = """() => {
  const B = window.__bench || {};
  const app = document.querySelector("[data-testid='stApp']");
  const busy = [...document.querySelectorAll("[data-stale='true'],[data-testid='stSkeleton'],"
      + "[data-testid='stSkeletonElement'],[data-testid='stAppSkeleton'],[data-testid='stSpinner']")]
    .slice(0, 4).map((e) => (e.getAttribute('data-stale') === 'true' ? 'stale ' : '')
      + (e.getAttribute('data-testid') || e.tagName) + (e.checkVisibility() ? '' : ' (hidden)')
      + (e.querySelector('[data-testid]') ? ' > ' + e.querySelector('[data-testid]').getAttribute('data-testid') : ''));
  return `script ${app && app.getAttribute('data-test-script-state')}, connection `
    + `${app && app.getAttribute('data-test-connection-state')}, runs ${B.runs}, render ${B.render !== null}, `
    + `busy: ${busy.join(', ') || 'none'}`;
}"""
