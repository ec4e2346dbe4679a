// Jangteo — the show report page: the numbers the server embedded (#report-data), drawn with
// uPlot (vendored, window.uPlot): viewers over time with each pin marked, orders per minute, GMV
// per product, and a table of conversion per pin. Sized to print on one A4 page.

const doc = JSON.parse(document.getElementById("report-data").textContent);
const $ = (id) => document.getElementById(id);
const won = (n) => `${Math.round(n).toLocaleString("ko-KR")}원`;
const pct = (x) => `${(x * 100).toFixed(1)}%`;
const hhmm = (ms) => new Date(ms).toLocaleTimeString("ko-KR", { hour: "2-digit", minute: "2-digit", timeZone: "Asia/Seoul" });
const WIDTH = Math.min(700, document.getElementById("report").clientWidth || 700);
const HEIGHT = 130;
const MAX_PINS_SHOWN = 12; // one page: the rest are summed up below the table

function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// -- heading and totals --------------------------------------------------------------------------
const b = doc.broadcast;
const minutes = Math.round(doc.duration_s / 60);
$("when").textContent = b.started_at
  ? `${new Date(b.started_at).toLocaleString("ko-KR", { timeZone: "Asia/Seoul" })} · ${minutes}분 · ${minutes} min`
  : "방송 전 · Not started";
const TOTALS = [
  ["최고 시청자 · Peak viewers", doc.viewers_peak.toLocaleString("ko-KR")],
  ["순 시청자 · Unique viewers", doc.viewers_unique.toLocaleString("ko-KR")],
  ["주문 · Orders", doc.orders.toLocaleString("ko-KR")],
  ["수량 · Units", doc.units.toLocaleString("ko-KR")],
  ["매출 · GMV", won(doc.gmv)],
  ["결제 완료 · Paid", won(doc.paid_gmv)],
  ["전환율 · Conversion", pct(doc.conversion)],
  ["채팅 · Chat", doc.chat_messages.toLocaleString("ko-KR")],
  ["하트 · Hearts", doc.hearts.toLocaleString("ko-KR")],
];
$("totals").replaceChildren(...TOTALS.flatMap(([k, v]) => {
  const box = el("div");
  box.append(el("dt", k), el("dd", v));
  return [box];
}));

// -- charts --------------------------------------------------------------------------------------
const AXIS = { stroke: "#333", grid: { stroke: "#e4e4e4" }, ticks: { stroke: "#ccc" } };
const FROM_ZERO = { range: (_u, _min, max) => [0, max > 0 ? max * 1.12 : 1] };
const KST = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Asia/Seoul"); // the merchant's clock

/** Vertical lines at each pin, labelled with the product (drawn after the series). */
function pinMarks(pins) {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.font = `${Math.round(11 * devicePixelRatio)}px sans-serif`;
        ctx.textBaseline = "top";
        pins.forEach((p, i) => {
          const x = Math.round(u.valToPos(p.at / 1000, "x", true));
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
          ctx.strokeStyle = "#d0183a";
          ctx.lineWidth = 2 * devicePixelRatio;
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.fillStyle = "#a0102c";
          ctx.fillText(`${i + 1}. ${p.name}`, x + 3 * devicePixelRatio, u.bbox.top + (i % 3) * 13 * devicePixelRatio);
        });
        ctx.restore();
      }],
    },
  };
}

const charts = [];
const tl = doc.timeline;
// the whole show on the time axis: from its start (or its first point or pin) to its end (or now)
const times = [...tl.map((p) => p.t), ...doc.pins.map((p) => p.at)];
const from = Math.min(b.started_at || Infinity, ...times, doc.at) / 1000;
const to = Math.max(b.ended_at || doc.at, ...times) / 1000;
const showRange = { time: true, range: [from, Math.max(to, from + 60)] };
charts.push(new uPlot({
  width: WIDTH, height: HEIGHT, legend: { show: false },
  scales: { x: showRange, y: FROM_ZERO }, tzDate: KST,
  axes: [{ ...AXIS }, { ...AXIS, label: "시청자 · viewers" }],
  series: [{}, { label: "viewers", stroke: "#1f6feb", width: 2, fill: "rgba(31,111,235,.12)" }],
  plugins: [pinMarks(doc.pins)],
}, [tl.map((p) => p.t / 1000), tl.map((p) => p.viewers)], $("viewers-chart")));

const bars = uPlot.paths.bars({ size: [0.8, 40] });
const opm = doc.orders_per_minute;
charts.push(new uPlot({
  width: WIDTH, height: HEIGHT, legend: { show: false },
  scales: { x: showRange, y: FROM_ZERO }, tzDate: KST,
  axes: [{ ...AXIS }, { ...AXIS, label: "주문/분 · orders/min" }],
  series: [{}, { label: "orders", stroke: "#2e8b57", fill: "rgba(46,139,87,.55)", paths: bars, points: { show: false } }],
  plugins: [pinMarks(doc.pins)],
}, [opm.map((m) => m.t / 1000), opm.map((m) => m.orders)], $("opm-chart")));

const products = doc.per_product.slice(0, 10);
charts.push(new uPlot({
  width: WIDTH, height: HEIGHT, legend: { show: false },
  scales: { x: { time: false, range: [-0.6, Math.max(products.length - 0.4, 0.6)] }, y: FROM_ZERO },
  axes: [
    { ...AXIS, splits: () => products.map((_, i) => i), values: () => products.map((p) => p.name), size: 34 },
    { ...AXIS, label: "매출 · GMV (만원)", values: (_, vals) => vals.map((v) => (v / 10000).toLocaleString("ko-KR")) },
  ],
  series: [{}, { label: "gmv", stroke: "#b8860b", fill: "#ffbe28", paths: bars, points: { show: false } }],
}, [products.map((_, i) => i), products.map((p) => p.gmv)], $("gmv-chart")));

// -- conversion per pin --------------------------------------------------------------------------
const pinned = doc.pins.slice(0, MAX_PINS_SHOWN);
charts.push(new uPlot({
  width: WIDTH, height: 110, legend: { show: false },
  scales: { x: { time: false, range: [-0.6, Math.max(pinned.length - 0.4, 0.6)] }, y: FROM_ZERO },
  axes: [
    { ...AXIS, splits: () => pinned.map((_, i) => i), values: () => pinned.map((_, i) => String(i + 1)), size: 24 },
    { ...AXIS, label: "전환 · conv. %", values: (_, vals) => vals.map((v) => (v * 100).toFixed(0)) },
  ],
  series: [{}, { label: "conversion", stroke: "#7a3db8", fill: "#9b59d0", paths: bars, points: { show: false } }],
}, [pinned.map((_, i) => i), pinned.map((p) => p.conversion)], $("conversion-chart")));

const rows = pinned.map((p, i) => {
  const tr = el("tr");
  tr.append(el("td", `${i + 1}. ${hhmm(p.at)}`), el("td", p.name), el("td", won(p.price)),
    el("td", `${p.orders} (${p.units})`), el("td", p.viewers.toFixed(0)), el("td", pct(p.conversion)));
  return tr;
});
if (doc.pins.length > MAX_PINS_SHOWN) {
  const rest = doc.pins.slice(MAX_PINS_SHOWN);
  const tr = el("tr");
  tr.append(el("td", `+${rest.length}`), el("td", "그 외 고정 · other pins"), el("td", ""),
    el("td", String(rest.reduce((s, p) => s + p.orders, 0))), el("td", ""), el("td", ""));
  rows.push(tr);
}
if (!rows.length) {
  const tr = el("tr");
  tr.append(el("td", "고정한 상품이 없습니다 · No pins", { colspan: "6" }));
  rows.push(tr);
}
document.querySelector("#pins tbody").replaceChildren(...rows);

window.jt = { report: doc, charts, ready: true };
