// Jangteo — the studio's live numbers: viewers now and peak, orders, GMV, conversion, and a small
// chart of viewers and orders over time with each pin marked (uPlot, vendored: window.uPlot).
// Reads GET /api/broadcasts/{bid}/stats every few seconds while the studio is open; links the
// show report. Plain ES module.

import { api, h, won } from "/static/live.js";

const EVERY_MS = 3000;

export class NumbersPanel {
  /** base: "/api/broadcasts/<bid>"; token: the host's; root: the panel's element. */
  constructor(base, token, root) {
    this.base = base;
    this.token = token;
    this.root = root;
    this.doc = null;
    this.chart = null;
    this.timer = null;
    this.reads = 0;
    const link = root.querySelector("[data-action='report']");
    link.href = `${base}/report?format=html&token=${encodeURIComponent(token)}`;
  }

  start() {
    this.refresh();
    // nobody looks at a hidden tab's numbers: read again when it shows
    this.timer = setInterval(() => document.hidden || this.refresh(), EVERY_MS);
  }

  stop() {
    clearInterval(this.timer);
  }

  /** The merchant's next show, from its past ones (once; nothing shown without a history). */
  async forecastFor(merchantId) {
    if (!merchantId || this.merchant === merchantId) return;
    this.merchant = merchantId;
    let f;
    try {
      f = await api(`/api/merchants/${encodeURIComponent(merchantId)}/forecast`, { token: this.token });
    } catch (_) {
      return;
    }
    const box = this.root.querySelector(".forecast");
    box.hidden = !f.shows;
    if (!f.shows) return;
    const hour = f.best_hour === null ? "" : ` · 가장 잘 팔린 시간 ${f.best_hour}시 · best hour ${f.best_hour}:00`;
    box.querySelector(".forecast-meta").textContent = `지난 방송 ${f.shows}회 기준 · from ${f.shows} past shows${hour}`;
    box.querySelector("ul").replaceChildren(...f.per_product.slice(0, 5).map((p) =>
      h("li", { dataset: { productId: p.product_id } }, h("span", { class: "grow" }, p.name),
        h("strong", {}, `${Math.round(p.expected_units)}개`), h("span", { class: "meta" }, ` (${p.low}–${p.high})`))));
  }

  async refresh() {
    try {
      this.doc = await api(`${this.base}/stats`, { token: this.token });
      this.reads++;
    } catch (_) {
      return; // shown again on the next read
    }
    this.render();
  }

  render() {
    const d = this.doc;
    const cell = (key, label, value) => h("div", { dataset: { stat: key } },
      h("dt", {}, label), h("dd", {}, value));
    this.root.querySelector(".numbers").replaceChildren(
      cell("viewers", "시청 · Now", d.viewers.toLocaleString("ko-KR")),
      cell("peak", "최고 · Peak", d.viewers_peak.toLocaleString("ko-KR")),
      cell("orders", "주문 · Orders", d.orders.toLocaleString("ko-KR")),
      cell("gmv", "매출 · GMV", won(d.gmv)),
      cell("conversion", "전환 · Conversion", `${(d.conversion * 100).toFixed(1)}%`));
    this.draw();
  }

  draw() {
    const box = this.root.querySelector(".numbers-chart");
    const tl = this.doc.timeline;
    if (!window.uPlot || tl.length < 2 || !box.clientWidth) return;
    const data = [tl.map((p) => p.t / 1000), tl.map((p) => p.viewers), tl.map((p) => p.orders)];
    if (this.chart && this.chart.width !== box.clientWidth) {
      this.chart.destroy();
      this.chart = null;
    }
    if (this.chart) {
      this.chart.setData(data);
      return;
    }
    const pins = () => this.doc.pins;
    this.chart = new window.uPlot({
      width: box.clientWidth, height: 120, legend: { show: false },
      scales: { x: { time: true }, n: { auto: true } },
      axes: [
        { stroke: "#aab0bc", grid: { stroke: "#2a2f3a" } },
        { stroke: "#9ecbff", grid: { stroke: "#2a2f3a" }, size: 36 },
        { scale: "n", side: 1, stroke: "#7ee2a8", grid: { show: false }, size: 36 },
      ],
      series: [{}, { label: "viewers", stroke: "#9ecbff", width: 2 },
        { label: "orders", scale: "n", stroke: "#7ee2a8", width: 2 }],
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = "#ffd43b";
          for (const p of pins()) {
            const x = Math.round(u.valToPos(p.at / 1000, "x", true));
            if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
            ctx.beginPath();
            ctx.moveTo(x, u.bbox.top);
            ctx.lineTo(x, u.bbox.top + u.bbox.height);
            ctx.stroke();
          }
          ctx.restore();
        }],
      },
    }, data, box);
  }
}
