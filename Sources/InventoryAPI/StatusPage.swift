import NIOCore

/// The status page served at `GET /`: one self-contained HTML document (inline CSS and vanilla JavaScript, no
/// external assets, no build step) that polls `GET /v1/status` every 2 s and shows what it answers.
enum StatusPage {
    /// The page, encoded once.
    static let html = ByteBuffer(string: source)

    // The script writes every value with textContent, so nothing from the service is ever parsed as HTML.
    private static let source = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>inventoryd status</title>
        <style>
          :root { --bg: #f5f6f8; --card: #fff; --ink: #1d2330; --muted: #6b7385; --line: #e2e5eb;
                  --ok: #1f8a4c; --warn: #b26a00; --bad: #c62828; }
          * { box-sizing: border-box; }
          body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
                 background: var(--bg); color: var(--ink); }
          header { display: flex; align-items: center; justify-content: space-between; gap: 16px;
                   padding: 16px 28px; background: var(--ink); color: #fff; }
          header h1 { margin: 0; font-size: 20px; font-weight: 600; }
          #state { font-size: 14px; padding: 4px 12px; border-radius: 999px; background: #38404f; }
          #state.live { background: var(--ok); }
          #state.failed { background: var(--bad); }
          #error { display: none; margin: 16px 28px 0; padding: 12px 16px; border-radius: 8px;
                   background: #fdecea; color: var(--bad); border: 1px solid #f5c2c0; font-weight: 600; }
          body.failed #error { display: block; }
          body.failed main { opacity: .55; }
          main { padding: 20px 28px 28px; }
          .cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 16px; }
          .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
          .card h2 { margin: 0 0 6px; font-size: 13px; font-weight: 600; color: var(--muted);
                     text-transform: uppercase; letter-spacing: .04em; }
          .value { font-size: 30px; font-weight: 650; font-variant-numeric: tabular-nums; }
          .note { font-size: 13px; color: var(--muted); margin-top: 4px; }
          .ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); }
          section { margin-top: 20px; background: var(--card); border: 1px solid var(--line); border-radius: 10px; }
          section h2 { margin: 0; padding: 12px 16px; font-size: 16px; border-bottom: 1px solid var(--line); }
          section h2 .note { display: inline; margin-left: 8px; font-weight: 400; }
          table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
          th, td { padding: 8px 16px; text-align: right; border-bottom: 1px solid var(--line); }
          th:first-child, td:first-child { text-align: left; }
          th { font-size: 13px; color: var(--muted); font-weight: 600; }
          tr:last-child td { border-bottom: none; }
          td.empty { text-align: center; color: var(--muted); padding: 18px; }
          footer { padding: 0 28px 20px; font-size: 13px; color: var(--muted); }
        </style>
        </head>
        <body>
        <header>
          <h1>inventoryd status</h1>
          <span id="state">loading…</span>
        </header>
        <div id="error" role="alert"></div>
        <main>
          <div class="cards">
            <div class="card"><h2>Outbox</h2><div class="value" id="outbox">–</div>
              <div class="note">events not yet in MySQL</div></div>
            <div class="card"><h2>Journal lag p50 / p99</h2><div class="value" id="lag">–</div>
              <div class="note" id="lag-note">Redis → MySQL, recent events</div></div>
            <div class="card"><h2>Worker</h2><div class="value" id="rate">–</div>
              <div class="note" id="rate-note">events per second</div></div>
            <div class="card"><h2>Last reconcile</h2><div class="value" id="reconcile">–</div>
              <div class="note" id="reconcile-note">–</div></div>
          </div>
          <section>
            <h2>Items near or at zero <span class="note" id="low-note"></span></h2>
            <table>
              <thead><tr><th>Item (biz:sku)</th><th>Available</th><th>Reserved</th><th>Danger at</th><th>State</th></tr></thead>
              <tbody id="low"><tr><td class="empty" colspan="5">loading…</td></tr></tbody>
            </table>
          </section>
        </main>
        <footer>Refreshes every 2 s from <code>/v1/status</code>. Last updated: <span id="updated">never</span></footer>
        <script>
        "use strict";
        const STATUS_URL = "/v1/status";
        const REFRESH_MS = 2000;
        let lastGood = null;

        function $(id) { return document.getElementById(id); }
        function set(id, text, tone) {
          const node = $(id);
          node.textContent = text;
          node.className = node.className.replace(/\b(ok|warn|bad)\b/g, "").trim();
          if (tone) node.classList.add(tone);
        }
        function pad(n) { return String(n).padStart(2, "0"); }
        function clock(date) { return pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds()); }
        function ms(value) {
          if (value === null) return "–";
          return value < 1000 ? value + " ms" : (value / 1000).toFixed(1) + " s";
        }
        function ago(iso) {
          const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
          if (seconds < 120) return seconds + " s ago";
          if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
          return Math.round(seconds / 3600) + " h ago";
        }

        function cell(row, text, tone) {
          const td = row.insertCell();
          td.textContent = text;
          if (tone) td.className = tone;
        }

        function showLowStock(items, count) {
          const body = $("low");
          body.replaceChildren();
          if (items.length === 0) {
            const row = body.insertRow();
            cell(row, "no item is at or below its danger level");
            row.cells[0].colSpan = 5;
            row.cells[0].className = "empty";
          }
          for (const item of items) {
            const row = body.insertRow();
            cell(row, item.bizId + ":" + item.skuId);
            cell(row, String(item.available), item.available <= 0 ? "bad" : "warn");
            cell(row, String(item.reserved));
            cell(row, String(item.dangerNum));
            cell(row, item.available <= 0 || item.soldOut ? "sold out" : "low", item.available <= 0 || item.soldOut ? "bad" : "warn");
          }
          $("low-note").textContent = count > items.length ? "showing " + items.length + " of " + count : count + " item(s)";
        }

        function show(status) {
          set("outbox", status.outboxEntries === null ? "–" : String(status.outboxEntries));
          const worker = status.worker;
          if (worker === null) {
            set("lag", "–");
            set("lag-note", "no write-back worker in this instance");
            set("rate", "off", "warn");
            set("rate-note", "no write-back worker in this instance");
          } else {
            const p99 = worker.journalLagP99Ms;
            set("lag", ms(worker.journalLagP50Ms) + " / " + ms(p99), p99 === null ? null : p99 > 5000 ? "bad" : p99 > 1000 ? "warn" : "ok");
            set("lag-note", worker.journalLagP50Ms === null ? "no events written back recently" : "Redis → MySQL, recent events");
            set("rate", worker.eventsPerSecond === null ? "–" : String(worker.eventsPerSecond));
            set("rate-note", "events per second written back");
          }
          const reconcile = status.lastReconcile;
          if (reconcile === null) {
            set("reconcile", "–");
            set("reconcile-note", "no reconciliation recorded");
          } else {
            const clean = reconcile.differences === 0;
            set("reconcile", clean ? "clean" : reconcile.differences + " diff.", clean ? "ok" : "bad");
            set("reconcile-note", reconcile.itemsChecked + " items checked, " + ago(reconcile.finishedAt || reconcile.startedAt));
          }
          showLowStock(status.lowStock, status.lowStockCount);
        }

        async function refresh() {
          const abort = new AbortController();
          const timer = setTimeout(() => abort.abort(), REFRESH_MS);
          try {
            const response = await fetch(STATUS_URL, { cache: "no-store", signal: abort.signal });
            const text = await response.text();
            let body = null;
            try { body = JSON.parse(text); } catch (_) { body = null; }
            if (!response.ok) {
              const reason = body && (body.detail || body.title);
              throw new Error("HTTP " + response.status + (reason ? " (" + reason + ")" : ""));
            }
            if (body === null) throw new Error("the answer is not JSON");
            show(body);
            lastGood = new Date();
            document.body.classList.remove("failed");
            set("state", "live · updated " + clock(lastGood));
            $("state").className = "live";
            $("updated").textContent = lastGood.toISOString();
          } catch (error) {
            const reason = error.name === "AbortError" ? "no answer within " + REFRESH_MS / 1000 + " s" : error.message;
            document.body.classList.add("failed");
            $("error").textContent = "Cannot fetch " + STATUS_URL + ": " + reason +
              (lastGood ? " — the numbers below are from " + clock(lastGood) + "." : " — no numbers yet.");
            $("state").textContent = "error";
            $("state").className = "failed";
          } finally {
            clearTimeout(timer);
            setTimeout(refresh, REFRESH_MS);
          }
        }
        refresh();
        </script>
        </body>
        </html>
        """#
}
