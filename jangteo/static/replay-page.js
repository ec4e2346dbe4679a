import { ViewerToken, broadcastId, broadcastInfo, pageToken } from "/static/whip-whep.js";
import { savedName } from "/static/storage.js";
import { api, claimsOf, h, t, won } from "/static/live.js";
import { BuyFlow } from "/static/buy.js";
import { useCurrency, useLang } from "/static/i18n.js";

const bid = broadcastId();
const $ = (id) => document.getElementById(id);
const video = $("player"), notice = $("notice"), statusEl = $("status"), list = $("chapters");
const REPLAY_POLL_MS = 3000; // while the server prepares the replay
const STOCK_POLL_MS = 15000; // the stock, while the page is in view (no chat socket here)

let replay = null; // the last GET …/replay answer
let chapters = []; // [{t_s, product_id, name, price, image, at}]
let products = new Map(); // id -> product with live stock (GET …/products)
let hls = null;
let pendingSeek = null; // a chapter tapped before the video knew its length
let current = -1; // the index of the chapter being watched
let opener = null; // the index of the chapter whose Buy opened the dialog

function status(text, kind = "") {
  statusEl.textContent = text;
  statusEl.dataset.kind = kind;
}

function showNotice(text) {
  notice.textContent = text;
  notice.hidden = !text;
}

/** "1:05" for 65.4 s; "1:02:03" past an hour. */
function mmss(s) {
  const n = Math.max(0, Math.floor(s));
  const hh = Math.floor(n / 3600), m = Math.floor((n % 3600) / 60), ss = String(n % 60).padStart(2, "0");
  return hh ? `${hh}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

// -- the buyer's token: the watch page's guest, else a new guest --------------------------------
// (the same guest as on the watch page of this show: its token is kept for the tab)
let initial = pageToken(bid, "watch");
if (initial && (claimsOf(initial)?.expiresAt || 0) < Date.now() + 60000) initial = null;
const viewerToken = new ViewerToken(
  bid, initial, () => savedName(`시청자${Math.floor(1000 + Math.random() * 9000)}`),
);
const getToken = (refresh) => viewerToken.get(refresh);

// -- buying (buy.js): at the product's own price, marked as from the replay ----------------------
/** A product as the replay sells it: live stock, its own price (a pinned deal was for the show). */
function productNow(id) {
  const p = products.get(id);
  return p ? { ...p, deal: null } : null;
}

const buyer = new BuyFlow({
  bid,
  getToken,
  via: "replay",
  product: productNow,
  onRefused: () => loadProducts(),
  onChange: () => loadProducts(),
  pollExpired: true,
});

async function loadProducts() {
  try {
    const doc = await api(`/api/broadcasts/${encodeURIComponent(bid)}/products`, { retries: 1 });
    products = new Map(doc.products.map((p) => [p.id, p]));
  } catch (_) {
    return; // keep what we had
  }
  renderChapters();
  buyer.refresh();
}

setInterval(() => {
  if (replay?.status === "ready" && document.visibilityState === "visible") loadProducts();
}, STOCK_POLL_MS);

// -- the chapters --------------------------------------------------------------------------------
function stockText(n) {
  return n > 0 ? t(`남은 수량 ${n}개`, `${n} left`) : t("품절", "Sold out");
}

function chapterItem(c, i) {
  const p = products.get(c.product_id);
  const name = p?.name || c.name;
  const image = c.image || p?.image || "";
  const price = p ? p.price : c.price; // a replay's order is at the product's own price
  const soldOut = p && p.stock <= 0;
  return h("li", { class: "chapter", dataset: { product: c.product_id, t: String(c.t_s), index: String(i) } },
    h("button", { type: "button", class: "jump", dataset: { action: "chapter", t: String(c.t_s) } },
      image ? h("img", { src: image, alt: "", loading: "lazy" })
        : h("span", { class: "thumb", "aria-hidden": "true" }, name.trim()[0] || "?"),
      h("span", { class: "info" },
        h("span", { class: "name" }, name),
        h("span", { class: "price" }, won(price)),
        h("span", { class: "at" }, mmss(c.t_s),
          h("span", { class: "sr-only" }, ` ${t("부터 보기", "watch from here")}`)))),
    h("div", { class: "buy-col" },
      !p ? null
        : soldOut ? h("span", { class: "sold-out" }, t("품절", "Sold out"))
          : [h("span", { class: "stock", dataset: { low: p.stock <= 5 ? "1" : "0" } }, stockText(p.stock)),
            h("button", { type: "button", class: "primary small", dataset: { action: "buy", product: p.id } },
              t("구매하기", "Buy"), h("span", { class: "sr-only" }, `: ${name}`))]));
}

function renderChapters() {
  $("chapters-empty").hidden = !(replay?.status === "ready" && !chapters.length);
  list.replaceChildren(...chapters.map(chapterItem));
  current = -1;
  highlight();
}

/** Mark the chapter being watched: the last one that started at or before the playhead. */
function highlight() {
  const at = pendingSeek ?? video.currentTime;
  let found = -1;
  for (let i = 0; i < chapters.length; i++) if (chapters[i].t_s <= at + 0.25) found = i;
  if (found === current) return;
  current = found;
  for (const li of list.children) {
    const on = Number(li.dataset.index) === found;
    li.classList.toggle("current", on);
    if (on) li.setAttribute("aria-current", "true");
    else li.removeAttribute("aria-current");
  }
}

function seekTo(seconds) {
  if (video.readyState >= 1) video.currentTime = seconds;
  else pendingSeek = seconds;
  const p = video.play();
  if (p && p.catch) p.catch(() => {}); // not allowed yet: the controls are there
  highlight();
}

list.addEventListener("click", (ev) => {
  const el = ev.target instanceof Element ? ev.target.closest("[data-action]") : null;
  if (!el) return;
  if (el.dataset.action === "chapter") seekTo(Number(el.dataset.t));
  else if (el.dataset.action === "buy") {
    opener = el.closest("li")?.dataset.index ?? null;
    buyer.open(productNow(el.dataset.product));
  }
});
// The list is drawn again when the stock changes: give the focus back to the chapter bought from.
buyer.dialog.addEventListener("close", () => {
  const li = opener !== null && list.querySelector(`li[data-index="${opener}"]`);
  opener = null;
  if (li && (document.activeElement === document.body || !document.activeElement)) {
    (li.querySelector('[data-action="buy"]') || li.querySelector('[data-action="chapter"]')).focus();
  }
});
video.addEventListener("loadedmetadata", () => {
  if (pendingSeek !== null) {
    video.currentTime = pendingSeek;
    pendingSeek = null;
  }
});
for (const type of ["timeupdate", "seeking", "seeked"]) video.addEventListener(type, highlight);

// -- playback: hls.js, else the browser's own HLS, else the MP4 ----------------------------------
function playMp4(doc) {
  if (!doc.mp4) {
    status(t("이 브라우저에서는 재생할 수 없어요", "This browser cannot play the replay"), "error");
    return;
  }
  video.src = doc.mp4;
}

function play(doc) {
  const mp4 = $("mp4-link");
  if (doc.mp4) {
    mp4.href = doc.mp4;
    mp4.hidden = false;
  }
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    let mediaRetries = 0, netRetries = 0;
    hls = new Hls({ enableWorker: true });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && mediaRetries++ < 2) hls.recoverMediaError();
      else if (data.type === Hls.ErrorTypes.NETWORK_ERROR && netRetries++ < 3) setTimeout(() => hls?.startLoad(), 2000);
      else {
        hls.destroy();
        hls = null;
        playMp4(doc); // the same show in one file
      }
    });
    hls.loadSource(doc.hls);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = doc.hls;
  } else playMp4(doc);
}

// -- the replay's status: prepared in the background after the show -----------------------------
async function loadInfo() {
  try {
    const info = await broadcastInfo(bid);
    if (!info) return;
    $("title").textContent = info.title || t("장터 다시보기", "Jangteo Replay");
    document.title = `${info.title || "장터"} · 다시보기 · Replay`;
    const live = $("live-link");
    live.href = `/watch/${encodeURIComponent(bid)}`;
    live.hidden = info.status !== "live";
  } catch (_) {
    /* the replay's own answer says what is wrong */
  }
}

async function check() {
  let doc;
  try {
    doc = await api(`/api/broadcasts/${encodeURIComponent(bid)}/replay`, { retries: 1 });
  } catch (err) {
    if (err.status === 404) {
      showNotice(t("방송을 찾을 수 없습니다", "Broadcast not found"));
      return;
    }
    setTimeout(check, REPLAY_POLL_MS); // the network: ask again
    return;
  }
  replay = doc;
  if (doc.status === "none") {
    showNotice(t("다시보기가 없어요", "No replay"));
    loadInfo();
    return;
  }
  if (doc.status !== "ready") {
    showNotice(t("다시보기를 준비하고 있어요", "The replay is being prepared"));
    loadInfo();
    setTimeout(check, REPLAY_POLL_MS);
    return;
  }
  showNotice("");
  chapters = [...(doc.chapters || [])].sort((a, b) => a.t_s - b.t_s);
  status(t(`총 ${mmss(doc.duration_s)} · 상품 ${chapters.length}개`,
    `${mmss(doc.duration_s)} long · ${chapters.length} products`));
  renderChapters();
  play(doc);
  loadProducts();
  $("live-link").hidden = true;
}

await Promise.all([useLang(), useCurrency()]); // the order dialog's words and the rates
if (bid) {
  loadInfo();
  check();
  buyer.load();
} else showNotice(t("주소에 방송 ID가 없습니다", "No broadcast id in the address"));

// Hooks for tests and debugging.
window.jt = {
  bid,
  video,
  buyer,
  get hls() { return hls; },
  get replay() { return replay; },
  get chapters() { return chapters; },
  get products() { return products; },
  get current() { return current; },
  seekTo,
};
