"""The live page under a flood of deltas: what applying them and painting the table costs in Chromium.

Opens the page of a `python -m app --demo` process in headless Chromium (Debian's /usr/bin/chromium),
closes its stream, and feeds it synthetic deltas of the shape CONTRACT §5 now sends (only the changed
figures: a price and, inside `stats`, one window's change) through the page's own delta handler:
  apply     deltas applied to the rows (deep merge), no painting in between: per delta
  burst     N deltas in one task, then the one paint they cause (its script time; the fastest of ten)
  stream    a delta every frame (every row's price changes): the paint's cost per frame, and frames kept

    python bench/bench_page.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service_process import DemoProcess  # noqa: E402

FEED = """
async ({deltas, rows, mode}) => {
  const P = window.tokenPage, S = P.state;
  if (S.es) { S.es.close(); S.es = null; }   // only our deltas from here on
  S.gen++;
  const order = S.order.slice(0, rows);
  const rnd = (k) => Math.random() * k;
  const make = () => ({epoch: S.epoch, seq: S.seq + 1, prev_seq: S.seq, upsert: order.map(a => ({
      token_address: a, price_usd: +(rnd(1)).toPrecision(6),
      stats: {'5m': {price_change: +(rnd(20) - 10).toFixed(2)}}})), remove: []});
  const frame = () => new Promise(resolve => requestAnimationFrame(() => resolve(performance.now())));
  await frame();
  if (mode === 'apply') {
    const t0 = performance.now();
    for (let i = 0; i < deltas; i++) P.feed(make());
    const t1 = performance.now();
    await frame(); await frame();
    return {per_delta_us: (t1 - t0) * 1000 / deltas};
  }
  if (mode === 'burst') {   // the fastest of ten: the machine's other load only ever adds
    let best = Infinity;
    for (let k = 0; k < 10; k++) {
      for (let i = 0; i < deltas; i++) P.feed(make());
      const t0 = performance.now();
      await frame();
      best = Math.min(best, performance.now() - t0);
      await frame();
    }
    return {paint_ms: best};
  }
  const gaps = [];
  let last = await frame();
  const start = last;
  for (let i = 0; i < deltas; i++) {
    P.feed(make());
    const now = await frame();
    gaps.push(now - last);
    last = now;
  }
  gaps.sort((a, b) => a - b);
  return {frames: deltas, ms: last - start, median_gap_ms: gaps[gaps.length >> 1],
          p95_gap_ms: gaps[Math.floor(gaps.length * .95)]};
}
"""


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as data_dir:
        service = DemoProcess(Path(data_dir)).start()
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                             args=["--no-sandbox", "--disable-gpu"])
                for rows in (30, 100):
                    page = browser.new_page(viewport={"width": 1400, "height": 900})
                    page.goto(f"{service.url}/?limit={rows}")
                    page.wait_for_function("(n) => document.querySelectorAll('#rows tr[data-address]').length >= n",
                                           arg=rows, timeout=20000)
                    apply = page.evaluate(FEED, {"deltas": 5000, "rows": rows, "mode": "apply"})
                    burst = page.evaluate(FEED, {"deltas": 100, "rows": rows, "mode": "burst"})
                    stream = page.evaluate(FEED, {"deltas": 300, "rows": rows, "mode": "stream"})
                    print(f"{rows:3d} rows  apply {apply['per_delta_us']:6.1f} us/delta"
                          f"  burst of 100: one paint {burst['paint_ms']:6.1f} ms"
                          f"  stream: {stream['frames']} frames in {stream['ms'] / 1000:.1f} s,"
                          f" median frame {stream['median_gap_ms']:.1f} ms, p95 {stream['p95_gap_ms']:.1f} ms")
                    page.close()
                browser.close()
        finally:
            service.stop()


if __name__ == "__main__":
    main()
